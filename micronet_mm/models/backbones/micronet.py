"""The MicroNet backbone: one builder for every architecture table in micronet_archs.py."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence

import torch
import torch.utils.checkpoint
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from micronet_mm.ops import BLOCKS, BlockSpec, MicroStem
from .micronet_archs import ARCH_SETTINGS

NUM_STAGES = 4
STAGE_STRIDES = (4, 8, 16, 32)


def _check_choice(name: str, value, legal) -> None:
    if value not in legal:
        raise ValueError(f'MicroNet: {name}={value!r} is not allowed; legal values: '
                         f'{list(legal)}')


def build_stage_specs(arch: str, output_stride: int = 32) -> list[list[BlockSpec]]:
    """Turn an architecture table into per-stage block specs, with stride turned into dilation
    once ``output_stride`` is reached (as timm's EfficientNet builder does: the block that would
    downsample keeps the old dilation, the blocks after it use the new one). Unlike timm, a block
    whose stride became dilation keeps the table's residuals (``BlockSpec.table_stride``): the
    dilated network is the same function sampled more densely, as the a-trous algorithm needs,
    and the ImageNet weights keep their meaning."""
    stages: list[list[BlockSpec]] = [[] for _ in range(NUM_STAGES)]
    nominal, current_stride, dilation = 2, 2, 1  # after the stem
    for row in ARCH_SETTINGS[arch]['rows']:
        spec = BlockSpec(*row)
        nominal *= spec.stride  # the table's output stride after this row: decides the stage
        stride, next_dilation = spec.stride, dilation
        if current_stride * spec.stride > output_stride:
            next_dilation, stride = dilation * spec.stride, 1
        else:
            current_stride *= spec.stride
        stages[STAGE_STRIDES.index(nominal)].append(
            dataclasses.replace(spec, stride=stride, dilation=dilation, table_stride=spec.stride))
        dilation = next_dilation
    return stages


def _checkpoint_contexts(block: nn.Module) -> tuple:
    """``torch.utils.checkpoint``'s ``context_fn``: the first forward as it is, the
    recomputation without running-statistics updates."""
    return contextlib.nullcontext(), _recompute_without_tracking(block)


@contextlib.contextmanager
def _recompute_without_tracking(module: nn.Module):
    """The recomputation of a checkpointed block: BatchNorm layers normalize by the batch as in
    the first forward but leave their running statistics as they are (the first forward updated
    them; a second update would count the batch twice). Momentum 0 keeps the same computation,
    and so the same saved tensors, which the checkpoint compares."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training
             and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


class MicroNet(BaseModule):
    """MicroNet backbone (Li et al., ICCV 2021), exact to the reference implementation.

    The model is a stem followed by four stages; stage i ends at output stride
    ``(4, 8, 16, 32)[i]`` for ``output_stride=32``. Architectures are the tables in
    ``micronet_archs.py``.

    Args:
        arch: key of ``ARCH_SETTINGS``: ``'m0'``, ``'m1'``, ``'m2'``, ``'m3'`` (ImageNet models
            of the ICCV paper and the official release) and the task variants listed there.
        out_indices: stages whose outputs are returned, counted 0..3 (strides 4, 8, 16, 32 at
            ``output_stride=32``). Negative values count from the end.
        frozen_stages: parts put in eval mode with ``requires_grad=False``: -1 freezes nothing,
            0 freezes the stem only, k (1..4) freezes the stem and stages 1..k, i.e. everything up
            to output stride ``2**(k+1)``. Same as mmdet's ResNet (detectron2's ``freeze_at = k+1``).
        output_stride: 32, 16 or 8. Blocks past it run with stride 1 and dilated depthwise
            convolutions, so the output keeps its size; weights are unchanged.
        norm_cfg: mmcv config of every normalization layer, e.g. ``dict(type='SyncBN')`` for
            several GPUs. The default BN gives the parameter names of the released checkpoints.
        norm_eval: keep every BatchNorm (SyncBN included) in eval mode (running statistics
            frozen) during training.
        with_cp: in training, recompute each block's activations in the backward pass
            (``torch.utils.checkpoint``) instead of keeping them: less memory, one more forward
            per block. Running statistics are updated once per step, as without it.
        full_rank: build the full-rank mutual-learning partner of arXiv v1 §5.1.
        act_cfg: overrides of the Dynamic Shift-Max settings (``ActSettings`` fields), e.g.
            ``dict(num_shifts=1)`` for dynamic ReLU or ``dict(dynamic=False)`` for static.
        init_cfg: mmengine initialisation; default as the reference code.
    """

    def __init__(self, arch: str = 'm0', *, out_indices: Sequence[int] = (3,),
                 frozen_stages: int = -1, output_stride: int = 32,
                 norm_cfg: dict = dict(type='BN'), norm_eval: bool = False,
                 with_cp: bool = False, full_rank: bool = False, act_cfg: dict | None = None,
                 init_cfg: dict | list | None = None) -> None:
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d', mode='fan_out',
                             nonlinearity='relu', distribution='normal'),
                        dict(type='Constant', layer='_BatchNorm', val=1, bias=0),
                        dict(type='Normal', layer='Linear', std=0.01, bias=0)]
        super().__init__(init_cfg=init_cfg)
        _check_choice('arch', arch, ARCH_SETTINGS)
        _check_choice('output_stride', output_stride, (8, 16, 32))
        _check_choice('frozen_stages', frozen_stages, range(-1, NUM_STAGES + 1))
        for i in out_indices:
            _check_choice('out_indices entry', i, range(-NUM_STAGES, NUM_STAGES))
        self.arch, self.output_stride = arch, output_stride
        self.out_indices = tuple(i % NUM_STAGES for i in out_indices)
        self.frozen_stages, self.norm_eval, self.with_cp = frozen_stages, norm_eval, with_cp
        self.norm_cfg = norm_cfg

        setting = ARCH_SETTINGS[arch]
        act = dataclasses.replace(setting['act'], **(act_cfg or {}))
        self.stem = MicroStem(3, *setting['stem'], norm_cfg=norm_cfg)
        channels = self.stem.out_channels
        self.stages = nn.ModuleList()
        self.stage_channels: list[int] = []
        for specs in build_stage_specs(arch, output_stride):
            blocks = []
            for spec in specs:
                block = BLOCKS[spec.block](channels, spec, act, full_rank=full_rank,
                                           norm_cfg=norm_cfg)
                blocks.append(block)
                channels = (channels * spec.expand[0] * spec.expand[1] if spec.block == 'E'
                            else spec.out_channels)
            self.stages.append(nn.Sequential(*blocks))
            self.stage_channels.append(channels)
        #: channels of each returned output, for necks and heads
        self.out_channels = [self.stage_channels[i] for i in self.out_indices]
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)  # (N, C_stem, H/2, W/2)
        outs = []
        for i, stage in enumerate(self.stages):
            x = self._run_stage(stage, x)  # (N, stage_channels[i], H/s_i, W/s_i)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``stage(x)``; with ``with_cp`` in training, each block checkpointed (class doc)."""
        if not (self.with_cp and self.training and torch.is_grad_enabled()
                and isinstance(stage, nn.Sequential)):
            return stage(x)
        for block in stage:
            if x.requires_grad or any(p.requires_grad for p in block.parameters()):
                x = torch.utils.checkpoint.checkpoint(
                    block, x, use_reentrant=False,
                    context_fn=functools.partial(_checkpoint_contexts, block))
            else:  # a frozen block: nothing to recompute
                x = block(x)
        return x

    def _freeze_stages(self) -> None:
        frozen = ([self.stem] if self.frozen_stages >= 0 else []) + \
            list(self.stages[:max(self.frozen_stages, 0)])
        for module in frozen:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'MicroNet':
        """Set train mode, then re-freeze frozen stages and, with ``norm_eval``, every BN
        (any ``_BatchNorm``: BatchNorm2d, SyncBatchNorm, and the BatchNorm1d/2d of mmengine's
        ``revert_sync_batchnorm``)."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

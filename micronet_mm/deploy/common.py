"""What every deploy rewrite uses: BatchNorm folding, channel permutations, and whether a trace
must hold for every input size."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from micronet_mm.ops import (ChannelShuffle, GroupPointwise, MicroFactorizedDepthwise, MicroStem,
                             SpatialAttention)
from micronet_mm.ops.blocks import ExpansionBlock, MicroBlockA, MicroBlockC

#: the MicroNet parts whose normalization layers deploy mode folds
FOLDED_PARTS = (GroupPointwise, MicroFactorizedDepthwise, MicroStem, SpatialAttention,
                MicroBlockA, MicroBlockC, ExpansionBlock)


_FIXED_INPUT_SIZE = [False]


def size_generic() -> bool:
    """True while tracing or exporting (``torch.onnx.export``, ``torch.jit.trace``) outside
    :func:`fixed_input_size`: a deploy module then computes what depends on the input size
    (a merged depthwise convolution's bias map, a pooled mean's 1/(H·W)) from the input with
    standard operators, so that the graph holds no size-specific constant and runs at every
    input size."""
    return ((torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
            and not _FIXED_INPUT_SIZE[0])


@contextlib.contextmanager
def fixed_input_size() -> Iterator[None]:
    """Within: a trace may hold constants of the traced input size (for an export whose input
    height and width are fixed: no shape subgraphs, precomputed bias maps)."""
    before, _FIXED_INPUT_SIZE[0] = _FIXED_INPUT_SIZE[0], True
    try:
        yield
    finally:
        _FIXED_INPUT_SIZE[0] = before


def check_foldable_norms(model: nn.Module) -> None:
    """Raise ``ValueError`` (one line) if a MicroNet part of ``model`` holds a normalization
    layer that is not a BatchNorm (any ``_BatchNorm``: BatchNorm2d, SyncBatchNorm, mmengine's
    reverted ``_BatchNormXd``), which folding into the convolutions needs."""
    for part_name, part in model.named_modules():
        if not isinstance(part, FOLDED_PARTS):
            continue
        for name, m in part.named_modules():
            if 'Norm' in type(m).__name__ and not isinstance(m, nn.modules.batchnorm._BatchNorm):
                where = '.'.join(n for n in (part_name, name) if n)
                raise ValueError(f'deploy folds BatchNorm into the convolutions, but {where} is a '
                                 f'{type(m).__name__}: build the model with '
                                 f"norm_cfg=dict(type='BN') or dict(type='SyncBN') to deploy it")


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(layer(x))`` as one layer; the output channel is dim 0. Computed
    in weight's dtype (float64 for the native programs' parameters), BN's statistics cast."""
    dtype = weight.dtype
    scale = bn.weight.to(dtype) / torch.sqrt(bn.running_var.to(dtype) + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean, dtype=dtype)
    return weight * scale.view(shape), bn.bias.to(dtype) + (b - bn.running_mean.to(dtype)) * scale


def fold_conv_bn(seq: nn.Sequential) -> nn.Conv2d:
    """``Sequential(Conv2d, BatchNorm2d)`` as one ``Conv2d`` with a bias."""
    conv, bn = seq[0], seq[1]
    weight, bias = fold_bn(conv.weight, conv.bias, bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      device=weight.device, dtype=weight.dtype)
    fused.weight.data.copy_(weight)
    fused.bias.data.copy_(bias)
    return fused


class ChannelPermute(nn.Module):
    """``x[:, index]`` as one ``index_select``: a channel shuffle, or several composed.

    Args:
        index: the permutation, ``y[:, i] = x[:, index[i]]``.
    """

    def __init__(self, index: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer('index', index.long(), persistent=False)

    @classmethod
    def from_shuffle(cls, shuffle: ChannelShuffle, channels: int) -> 'ChannelPermute':
        return cls(shuffle(torch.arange(channels).view(1, channels, 1, 1)).view(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)  # (N, C, H, W)

    def extra_repr(self) -> str:
        return f'channels={self.index.numel()}'


def as_permutation(index: torch.Tensor) -> nn.Module:
    """``ChannelPermute(index)``, or ``Identity`` when ``index`` leaves every channel in place."""
    if torch.equal(index, torch.arange(index.numel())):
        return nn.Identity()
    return ChannelPermute(index)


def permute(module: nn.Module, channels: int) -> nn.Module:
    """A :class:`ChannelShuffle` as a :class:`ChannelPermute`; anything else as it is."""
    if isinstance(module, ChannelShuffle):
        return ChannelPermute.from_shuffle(module, channels)
    return module


def compose(first: nn.Module, second: nn.Module, channels: int) -> tuple[nn.Module, nn.Module]:
    """``second(first(x))`` as ``(one permutation or Identity, Identity)``."""
    first, second = permute(first, channels), permute(second, channels)
    index = torch.arange(channels)
    for m in (first, second):
        if isinstance(m, ChannelPermute):
            index = index[m.index]
        elif not isinstance(m, nn.Identity):
            raise TypeError(f'cannot compose {type(m).__name__} as a permutation')
    return as_permutation(index), nn.Identity()

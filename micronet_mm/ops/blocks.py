"""Micro-Blocks A, B and C (ICCV paper §5.1, Figure 4) and the activation settings they share.

Block boundaries follow the reference code. Its residual rule is the same for every block type
(``DYMicroBlock``: ``identity = stride == 1 and inp == oup``): a block adds its input to its output
whenever its stride is 1 and its output width equals its input width, whether it is a Micro-A, B,
C or the final expansion (:func:`has_residual`). In the ImageNet tables this adds a residual to
M3's third block (a stride-1, 24 -> 24 Micro-Block-A) besides the C blocks;
``tests/test_backbone.py`` lists, per table, every block that has one.

* Micro-Block-A (lite combination): expanding Micro-Factorized depthwise convolution, activation
  A1, shuffle, group-adaptive compression, activation A2, shuffle. Best at high resolution.
* Micro-Block-B: the first block after the A blocks. Its expansion completes the Micro-Factorized
  pointwise convolution that the last A block's compression began (Q, shuffle, then P here), so
  it has the structure of Micro-Block-C.
* Micro-Block-C (regular combination): group-adaptive expansion, A1, shuffle, Micro-Factorized
  depthwise convolution, A2, shuffle, group-adaptive compression, A3, shuffle.
* ExpansionBlock: the last row of every model, a group-adaptive expansion (+ A3) that feeds the
  classifier. The paper's Table 1 lists it as the last Micro-C.

Activation modes per slot (the ``dsm`` column of the architecture tables): 0 = ReLU6 (A3: none),
1 = Dynamic Shift-Max with K=1, 2 = Dynamic Shift-Max with K=2 (a max of two fusions).

``full_rank=True`` builds the mutual-learning partner of arXiv v1 §5.1: the same widths with each
group-adaptive convolution replaced by an ordinary pointwise one and each Micro-Factorized
depthwise convolution by a kxk depthwise one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .depthwise import MicroFactorizedDepthwise
from .lite import LiteCombination
from .norm import norm_layer
from .pointwise import ChannelShuffle, GroupPointwise
from .shift_max import DynamicShiftMax, make_divisible
from .spatial_attention import SpatialAttention


@dataclass(frozen=True)
class ActSettings:
    """Dynamic Shift-Max settings shared by all blocks of a model (reference defaults).

    Args:
        init_a: j=0 offsets of A1/A2 per fusion k (A3 always uses (1, 0)).
        init_b: j=1 offsets of A1/A2 per fusion k (A3 always uses (0, 0)).
        act_max: coefficient range ``init ± act_max``.
        reduction: base squeeze ratio of the hyper-function (times the row's ``r``).
        num_shifts: J of Eq. 4.
        num_fusions: K of Eq. 4 for slots in mode 2.
        dynamic: False gives static Shift-Max.
        inner_shift: shift inside groups too, as the reference code (see shift_max.py).
        spatial_attention: scale every activation slot's output by the spatial attention of
            dynamic ReLU, computed from the slot's input (:class:`SpatialAttention`), as the
            pose head does; off in the backbones.
    """
    init_a: tuple[float, float] = (1.0, 1.0)
    init_b: tuple[float, float] = (0.0, 0.0)
    act_max: float = 2.0
    reduction: int = 8
    num_shifts: int = 2
    num_fusions: int = 2
    dynamic: bool = True
    inner_shift: bool = True
    spatial_attention: bool = False


@dataclass(frozen=True)
class BlockSpec:
    """One row of an architecture table (see ``micronet_mm/models/backbones/micronet.py``)."""
    block: str
    kernel: int
    stride: int
    expand: tuple[int, int]
    out_channels: int
    groups_in: tuple[int, int]
    groups_out: tuple[int, int]
    dsm: tuple[int, int, int]
    reduction: int
    dilation: int = 1
    extra: dict = field(default_factory=dict)
    #: the table's stride when the builder has turned it into dilation (``None``: ``stride``);
    #: the residual rule reads it, so a dilated block keeps the residuals of the table
    table_stride: int | None = None

    @property
    def residual_stride(self) -> int:
        return self.stride if self.table_stride is None else self.table_stride


def has_residual(stride: int, in_channels: int, out_channels: int) -> bool:
    """The reference code's residual rule, the same for every block type: the block's input is
    added to its output when the stride is 1 and the widths are equal."""
    return stride == 1 and in_channels == out_channels


def make_activation(mode: int, channels: int, groups: int, reduction: int, act: ActSettings, *,
                    output: bool = False, norm_cfg: dict | None = None) -> nn.Module:
    """Activation slot: ReLU6 / Identity (mode 0), else Dynamic Shift-Max (K=1 or K); inside a
    :class:`SpatialAttention` (its map computed from the slot's input, its logit normalized as
    ``norm_cfg`` says) when ``act.spatial_attention``."""
    slot = _activation(mode, channels, groups, reduction, act, output=output)
    if not act.spatial_attention:
        return slot
    return SpatialAttention(channels, slot, norm_cfg=norm_cfg)


def _activation(mode: int, channels: int, groups: int, reduction: int, act: ActSettings, *,
                output: bool) -> nn.Module:
    if mode == 0:
        return nn.Identity() if output else nn.ReLU6(inplace=True)
    init_a, init_b = ((1.0, 0.0), (0.0, 0.0)) if output else (act.init_a, act.init_b)
    return DynamicShiftMax(
        channels, groups=groups, num_shifts=act.num_shifts,
        num_fusions=act.num_fusions if mode == 2 else 1,
        squeeze_channels=make_divisible(channels // reduction, 4), act_max=act.act_max,
        init_a=init_a, init_b=init_b, dynamic=act.dynamic, inner_shift=act.inner_shift)


def make_depthwise(in_channels: int, kernel_size: int, *, stride: int, dilation: int,
                   expand: tuple[int, int] = (1, 1), full_rank: bool = False,
                   norm_cfg: dict | None = None) -> nn.Module:
    """Micro-Factorized depthwise convolution, or a kxk depthwise one for ``full_rank``."""
    if not full_rank:
        return MicroFactorizedDepthwise(in_channels, kernel_size, stride=stride,
                                        dilation=dilation, expand=expand, norm_cfg=norm_cfg)
    out = in_channels * expand[0] * expand[1]
    return nn.Sequential(nn.Conv2d(in_channels, out, kernel_size, stride,
                                   dilation * (kernel_size // 2), dilation=dilation,
                                   groups=in_channels, bias=False), norm_layer(norm_cfg, out))


def shuffle_or_identity(groups: int, enabled: bool = True) -> nn.Module:
    return ChannelShuffle(groups) if enabled and groups > 1 else nn.Identity()


class MicroBlockA(nn.Module):
    """Micro-Block-A (Figure 4a): the lite combination with activations A1 (after the
    depthwise expansion) and A2 (after the compression); a residual when stride is 1 and the
    widths match (:func:`has_residual`; M3's third block).

    Args:
        in_channels: input width.
        spec: the table row. ``expand=(m1, m2)`` multiplies the width in the depthwise part;
            ``groups_in[1]`` is the group count of A1 and its shuffle; ``groups_out`` = (groups
            of the compression, groups of A2 and its shuffle).
        act: shared activation settings.
        full_rank: build the mutual-learning partner.
        norm_cfg: mmcv config of every normalization layer (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int, spec: BlockSpec, act: ActSettings,
                 full_rank: bool = False, *, norm_cfg: dict | None = None) -> None:
        super().__init__()
        hidden = in_channels * spec.expand[0] * spec.expand[1]
        out = spec.out_channels
        g_mid, (g_pw, g_out) = spec.groups_in[1], spec.groups_out
        red = act.reduction * spec.reduction
        mid_act = make_activation(spec.dsm[1], hidden, g_mid, red, act, norm_cfg=norm_cfg)
        self.lite = LiteCombination(
            in_channels, out, spec.kernel, stride=spec.stride, dilation=spec.dilation,
            expand=spec.expand, groups=(g_mid, 1 if full_rank else g_pw), mid_act=mid_act,
            mid_shuffle2=spec.dsm[1] != 0,
            depthwise=make_depthwise(in_channels, spec.kernel, stride=spec.stride,
                                     dilation=spec.dilation, expand=spec.expand,
                                     full_rank=full_rank, norm_cfg=norm_cfg),
            norm_cfg=norm_cfg)
        self.act2 = make_activation(spec.dsm[2], out, g_out, red // 2, act, output=True,
                                    norm_cfg=norm_cfg)
        self.shuffle2 = shuffle_or_identity(g_out)
        self.shuffle2b = shuffle_or_identity(out // 2, spec.dsm[2] != 0 and out % 2 == 0)
        self.use_residual = has_residual(spec.residual_stride, in_channels, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        x = self.lite(x)  # (N, C_out, H/s, W/s)
        x = self.shuffle2b(self.shuffle2(self.act2(x)))
        return x + identity if self.use_residual else x


class MicroBlockC(nn.Module):
    """Micro-Block-C (Figure 4c): regular combination, expand -> depthwise -> compress, with
    activations A1, A2, A3 after each and a residual when stride is 1 and widths match.

    Args:
        in_channels: input width.
        spec: the table row. ``expand=(1, t)``: hidden width ``t·C_in``; ``groups_in`` = (groups
            of the expansion, groups of A1/A2); ``groups_out`` = (groups of the compression,
            groups of A3).
        act: shared activation settings.
        full_rank: build the mutual-learning partner.
        norm_cfg: mmcv config of every normalization layer (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int, spec: BlockSpec, act: ActSettings,
                 full_rank: bool = False, *, norm_cfg: dict | None = None) -> None:
        super().__init__()
        hidden = in_channels * spec.expand[0] * spec.expand[1]
        out = spec.out_channels
        (g_pw1, g_sh), (g_pw2, g_out) = spec.groups_in, spec.groups_out
        y1, y2, y3 = spec.dsm
        red = act.reduction * spec.reduction
        self.use_residual = has_residual(spec.residual_stride, in_channels, out)
        self.expand = GroupPointwise(in_channels, hidden, 1 if full_rank else g_pw1,
                                     norm_cfg=norm_cfg)
        self.act1 = make_activation(y1, hidden, g_sh, red, act, norm_cfg=norm_cfg)
        self.shuffle1 = shuffle_or_identity(g_sh)
        self.depthwise = make_depthwise(hidden, spec.kernel, stride=spec.stride,
                                        dilation=spec.dilation, full_rank=full_rank,
                                        norm_cfg=norm_cfg)
        # A2 shifts across groups of g_sh channels (the depthwise output has no group structure).
        self.act2 = make_activation(y2, hidden, hidden // g_sh if g_sh != 1 else 1, red, act,
                                    norm_cfg=norm_cfg)
        self.shuffle2 = (shuffle_or_identity(hidden // 4) if y1 and y2 else
                         nn.Identity() if not (y1 or y2) else shuffle_or_identity(hidden // 2))
        self.compress = GroupPointwise(hidden, out, 1 if full_rank else g_pw2,
                                       norm_cfg=norm_cfg)
        self.act3 = make_activation(y3, out, g_out, red // 2 if out < hidden else red, act,
                                    output=True, norm_cfg=norm_cfg)
        self.shuffle3 = shuffle_or_identity(g_out)
        self.shuffle3b = shuffle_or_identity(out // 2, y3 != 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        x = self.shuffle1(self.act1(self.expand(x)))  # (N, t·C_in, H, W)
        x = self.shuffle2(self.act2(self.depthwise(x)))  # (N, t·C_in, H/s, W/s)
        x = self.shuffle3b(self.shuffle3(self.act3(self.compress(x))))  # (N, C_out, H/s, W/s)
        return x + identity if self.use_residual else x


class MicroBlockB(MicroBlockC):
    """Micro-Block-B (Figure 4b): links the A blocks to the C blocks. Its group-adaptive
    expansion is the ``P`` half of the Micro-Factorized pointwise convolution whose ``Q`` half
    (with the shuffle Φ) ends the preceding Micro-Block-A, so it both compresses and expands.
    Same layers and residual rule as :class:`MicroBlockC` (``v1-m3``'s stride-1 48 -> 48
    Micro-B has a residual).
    """


class ExpansionBlock(nn.Module):
    """Last row: group-adaptive expansion to the classifier width, then activation A3.

    Args:
        in_channels: input width.
        spec: the table row; ``expand=(1, t)``, ``groups_in`` = (conv groups, A3 groups).
        act: shared activation settings.
        full_rank: build the mutual-learning partner.
        norm_cfg: mmcv config of every normalization layer (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int, spec: BlockSpec, act: ActSettings,
                 full_rank: bool = False, *, norm_cfg: dict | None = None) -> None:
        super().__init__()
        hidden = in_channels * spec.expand[0] * spec.expand[1]
        g_pw, g_sh = spec.groups_in
        self.expand = GroupPointwise(in_channels, hidden, 1 if full_rank else g_pw,
                                     norm_cfg=norm_cfg)
        self.act = make_activation(spec.dsm[2], hidden, g_sh, act.reduction * spec.reduction,
                                   act, output=True, norm_cfg=norm_cfg)
        # the reference rule; no table has t = 1, so no expansion block has a residual
        self.use_residual = has_residual(spec.residual_stride, in_channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand(x))  # (N, t·C_in, H, W)
        return y + x if self.use_residual else y


BLOCKS = {'A': MicroBlockA, 'B': MicroBlockB, 'C': MicroBlockC, 'E': ExpansionBlock}

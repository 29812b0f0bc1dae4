"""Micro-Factorized pointwise convolution (ICCV paper §3.1, Eq. 1-3).

A C_in x C_out pointwise convolution W is factorized as ``W = P Φ Q^T``:

* ``Q`` (C_in -> C/R) and ``P`` (C/R -> C_out) are block-diagonal, i.e. *group-adaptive*
  1x1 convolutions whose group number follows Eq. 3, ``G = sqrt(C/R)``;
* ``Φ`` is a permutation of the C/R hidden channels, a channel shuffle.

Inside MicroNet's blocks the two halves sit in consecutive blocks (a block ends with ``Q`` and a
shuffle, the next begins with ``P``), so the blocks use :class:`GroupPointwise` directly;
:class:`MicroFactorizedPointwise` is the whole factorization as one operator, used by the heads.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .norm import norm_layer


class ChannelShuffle(nn.Module):
    """Channel shuffle Φ of Eq. 1 (ShuffleNet): ``(N, G·M, H, W) -> view (G, M) -> (M, G)``.

    Args:
        groups: number of groups G; the channel count must be divisible by it.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w)  # (N, G, C/G, H, W)
        return x.transpose(1, 2).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f'groups={self.groups}'


def adaptive_groups(channels: int, reduction: float, *, divides: Sequence[int] = ()) -> int:
    """Eq. 3: the integer closest to ``sqrt(C / R)``, at least 1; lowered, where needed, to the
    largest value that divides every width in ``divides``."""
    groups = max(1, round(math.sqrt(channels / reduction)))
    while any(width % groups for width in divides):
        groups -= 1
    return groups


class GroupPointwise(nn.Sequential):
    """One group-adaptive 1x1 convolution plus BN: the ``P`` or ``Q`` factor of Eq. 1.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        groups: number of groups (block-diagonal blocks).
        norm_cfg: mmcv config of the normalization layer (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, *,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False, groups=groups)
        self.bn = norm_layer(norm_cfg, out_channels)


class MicroFactorizedPointwise(nn.Module):
    """Full Micro-Factorized pointwise convolution ``W = P Φ Q^T`` (Eq. 1).

    ``Q`` compresses C_in to ``hidden`` channels in ``groups[0]`` groups, ``Φ`` shuffles them,
    ``P`` expands to C_out in ``groups[1]`` groups. With ``groups=None`` both follow Eq. 3,
    ``G = sqrt(C/R)`` where ``R = in_channels / hidden``. Each output then connects to every input
    exactly once (Eq. 3 is the point where connectivity E equals C).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        hidden: C/R, the number of hidden channels between Q and P.
        groups: ``(G_Q, G_P)``; default from Eq. 3.
        norm_cfg: mmcv config of the normalization after each factor (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int,
                 groups: tuple[int, int] | None = None, *,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        if groups is None:  # Eq. 3 with C/R = hidden, lowered to a divisor of every width
            g = adaptive_groups(hidden, 1, divides=(in_channels, hidden, out_channels))
            groups = (g, g)
        self.q = GroupPointwise(in_channels, hidden, groups[0], norm_cfg=norm_cfg)
        self.shuffle = ChannelShuffle(groups[0])
        self.p = GroupPointwise(hidden, out_channels, groups[1], norm_cfg=norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.q(x)  # (N, C/R, H, W)
        x = self.shuffle(x)
        return self.p(x)  # (N, C_out, H, W)

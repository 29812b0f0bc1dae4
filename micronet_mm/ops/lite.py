"""Lite combination of Micro-Factorized depthwise and pointwise convolutions (ICCV paper §3.2,
Figure 2-Right).

The expanding Micro-Factorized depthwise convolution applies several spatial filters per channel
(C -> C·m1·m2), then one group-adaptive convolution fuses and compresses the channels. Compared
with the regular combination it spends more on spatial filters and less on channel fusion, which
suits the high-resolution lower layers (Table 3c).
"""
from __future__ import annotations

import torch
from torch import nn

from .depthwise import MicroFactorizedDepthwise
from .pointwise import ChannelShuffle, GroupPointwise


class LiteCombination(nn.Module):
    """Expanding depthwise -> activation -> shuffle(s) -> group-adaptive compression.

    Args:
        in_channels: C.
        out_channels: output width after compression.
        kernel_size: k of the kx1 / 1xk factors.
        stride: spatial stride.
        dilation: dilation of the depthwise factors.
        expand: ``(m1, m2)`` filters per channel in the kx1 and 1xk factors.
        groups: ``(G_shuffle, G_conv)``: shuffle groups after the activation and groups of the
            compressing convolution.
        mid_act: activation after the depthwise part (default ReLU6).
        mid_shuffle2: add the second shuffle (pairs of channels) used after Shift-Max.
        depthwise: replace the depthwise part (the full-rank partner uses a kxk convolution).
        norm_cfg: mmcv config of the normalization layers (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, dilation: int = 1, expand: tuple[int, int] = (2, 2),
                 groups: tuple[int, int] = (1, 1), mid_act: nn.Module | None = None,
                 mid_shuffle2: bool = False, depthwise: nn.Module | None = None,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        hidden = in_channels * expand[0] * expand[1]
        self.depthwise = depthwise or MicroFactorizedDepthwise(
            in_channels, kernel_size, stride=stride, dilation=dilation, expand=expand,
            norm_cfg=norm_cfg)
        self.act = mid_act if mid_act is not None else nn.ReLU6(inplace=True)
        self.shuffle = ChannelShuffle(groups[0]) if groups[0] > 1 else nn.Identity()
        self.shuffle2 = ChannelShuffle(hidden // 2) if mid_shuffle2 else nn.Identity()
        self.compress = GroupPointwise(hidden, out_channels, groups[1], norm_cfg=norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.depthwise(x))  # (N, C·m1·m2, H/s, W/s)
        x = self.shuffle2(self.shuffle(x))
        return self.compress(x)  # (N, C_out, H/s, W/s)

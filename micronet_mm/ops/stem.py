"""MicroNet stem (ICCV paper §5.2): a 3x1 convolution, then a 1x3 group convolution that expands
the channels, then a ReLU. It is the lite combination applied to the RGB input.
"""
from __future__ import annotations

import torch
from torch import nn

from .norm import norm_layer
from .pointwise import ChannelShuffle


class MicroStem(nn.Module):
    """3 -> C1 (3x1, stride (2,1)) -> C1·m (1x3 group conv, stride (1,2)) -> shuffle -> ReLU6.

    Args:
        in_channels: image channels.
        mid_channels: C1, output of the 3x1 convolution; also the group count of the 1x3 one.
        multiplier: m, filters per channel of the 1x3 convolution; output has ``C1·m`` channels.
        stride: total stride (2 for MicroNet).
        norm_cfg: mmcv config of the two normalization layers (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int = 3, mid_channels: int = 2, multiplier: int = 2,
                 stride: int = 2, kernel_size: int = 3, *,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        self.out_channels = mid_channels * multiplier
        pad = kernel_size // 2
        self.conv_k1 = nn.Conv2d(in_channels, mid_channels, (kernel_size, 1), (stride, 1),
                                 (pad, 0), bias=False)
        self.bn1 = norm_layer(norm_cfg, mid_channels)
        self.conv_1k = nn.Conv2d(mid_channels, self.out_channels, (1, kernel_size), (1, stride),
                                 (0, pad), groups=mid_channels, bias=False)
        self.bn2 = norm_layer(norm_cfg, self.out_channels)
        self.shuffle = ChannelShuffle(mid_channels)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_k1(x))  # (N, C1, H/2, W)
        x = self.bn2(self.conv_1k(x))  # (N, C1·m, H/2, W/2)
        return self.act(self.shuffle(x))

"""Micro-Factorized depthwise convolution (ICCV paper §3.2).

A kxk depthwise kernel W is factorized as ``W = P Φ Q^T`` with a kx1 vector P, a 1xk vector Q and
Φ = 1: a kx1 depthwise convolution followed by a 1xk one. Cost falls from O(k²C) to O(kC).
Each factor may also multiply the channels (several spatial filters per channel), which is how
the lite combination (Micro-Block-A and the stem) expands channels.
"""
from __future__ import annotations

import torch
from torch import nn

from .norm import norm_layer


class MicroFactorizedDepthwise(nn.Module):
    """kx1 then 1xk depthwise convolution, each followed by BN.

    Args:
        in_channels: C.
        kernel_size: k.
        stride: applied as (s, 1) in the kx1 and (1, s) in the 1xk convolution.
        dilation: dilation of both factors (used for output stride 16 / 8).
        expand: channel multipliers ``(m1, m2)`` of the kx1 and the 1xk convolutions; the output
            has ``C * m1 * m2`` channels.
        norm_cfg: mmcv config of the two normalization layers (``None``: BatchNorm2d).
    """

    def __init__(self, in_channels: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
                 expand: tuple[int, int] = (1, 1), norm_cfg: dict | None = None) -> None:
        super().__init__()
        mid = in_channels * expand[0]
        self.out_channels = mid * expand[1]
        pad = dilation * (kernel_size // 2)
        self.conv_k1 = nn.Conv2d(in_channels, mid, (kernel_size, 1), (stride, 1), (pad, 0),
                                 dilation=(dilation, 1), groups=in_channels, bias=False)
        self.bn1 = norm_layer(norm_cfg, mid)
        self.conv_1k = nn.Conv2d(mid, self.out_channels, (1, kernel_size), (1, stride), (0, pad),
                                 dilation=(1, dilation), groups=mid, bias=False)
        self.bn2 = norm_layer(norm_cfg, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_k1(x))  # (N, C·m1, H/s, W)
        return self.bn2(self.conv_1k(x))  # (N, C·m1·m2, H/s, W/s)

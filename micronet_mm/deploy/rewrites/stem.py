"""The Micro-Factorized stem (:class:`MicroStem`) as one dense 3x3 convolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronet_mm.ops import MicroStem

from ..common import ChannelPermute, fold_bn
from .depthwise import RowBiasMap


class MergedStem(RowBiasMap):
    """:class:`MicroStem` (3x1 conv + BN, 1x3 group conv + BN, shuffle, ReLU6) as one dense 3x3
    convolution with the shuffle folded into its output channels, a bias map, and ReLU6.

    Args:
        stem: the stem, weights loaded.
    """

    def __init__(self, stem: MicroStem, full_map: bool = False) -> None:
        super().__init__(full_map)
        k1, k2 = stem.conv_k1, stem.conv_1k
        w1, b1 = fold_bn(k1.weight, None, stem.bn1)  # (C1, 3, k, 1)
        w2, b2 = fold_bn(k2.weight, None, stem.bn2)  # (C1·m, 1, 1, k)
        m = k2.out_channels // k2.in_channels
        weight = w1.repeat_interleave(m, 0) * w2  # (C1·m, 3, k, k)
        perm = ChannelPermute.from_shuffle(stem.shuffle, weight.shape[0]).index
        self.weight = nn.Parameter(weight[perm])
        self.stride, self.padding = (k1.stride[0], k2.stride[1]), (k1.padding[0], k2.padding[1])
        self.dilation = (1, 1)
        self.register_buffer('row_weight', w2.detach()[perm].clone())
        self.register_buffer('row_bias', b1.detach().repeat_interleave(m)[perm].view(1, -1, 1, 1))
        self.register_buffer('out_bias', b2.detach()[perm].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, None, self.stride, self.padding)  # (N, C1·m, H/2, W/2)
        return F.relu6(self.add_bias(y, x))



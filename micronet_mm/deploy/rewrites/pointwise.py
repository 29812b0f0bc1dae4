"""Group-adaptive 1x1 convolution + BN (:class:`GroupPointwise`) with the BN folded."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronet_mm.ops import GroupPointwise

from ..common import fold_bn


class FusedPointwise(nn.Module):
    """A (grouped) 1x1 convolution with its BN folded into weight and bias.

    Args:
        weight: ``(C_out, C_in / G, 1, 1)``.
        bias: ``(C_out,)``.
        groups: G.
        use_matmul: run as one batched matrix product over the groups (fast in PyTorch eager);
            else ``conv2d`` (exported to ONNX as one ``Conv``).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, groups: int,
                 use_matmul: bool) -> None:
        super().__init__()
        self.groups, self.use_matmul = groups, use_matmul
        self.out_channels, self.in_channels = weight.shape[0], weight.shape[1] * groups
        if use_matmul:  # (G, C_out/G, C_in/G) and (G, C_out/G, 1)
            weight = weight.reshape(groups, self.out_channels // groups, -1)
            bias = bias.reshape(groups, -1, 1)
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())

    @classmethod
    def from_group_pointwise(cls, module: GroupPointwise, use_matmul: bool) -> 'FusedPointwise':
        weight, bias = fold_bn(module.conv.weight, module.conv.bias, module.bn)
        return cls(weight, bias, module.conv.groups, use_matmul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_matmul:
            return F.conv2d(x, self.weight, self.bias, groups=self.groups)
        n, _, h, w = x.shape
        g, (_, co, ci) = self.groups, self.weight.shape
        y = torch.baddbmm(self.bias.expand(n, g, co, 1).reshape(n * g, co, 1),
                          self.weight.expand(n, g, co, ci).reshape(n * g, co, ci),
                          x.reshape(n * g, ci, h * w))  # (N·G, C_out/G, H·W)
        return y.view(n, g * co, h, w)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, groups={self.groups}, '
                f'use_matmul={self.use_matmul}')

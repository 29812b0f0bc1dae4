"""Micro-Factorized depthwise convolution (kx1 + BN, 1xk + BN) in deploy form: merged into one
kxk convolution with an exact bias map (:class:`MergedDepthwise`), or kept as two convolutions
with the BN folded (:class:`FactorizedDepthwise`, what ONNX Runtime runs faster)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from micronet_mm.ops import MicroFactorizedDepthwise

from ..common import fold_bn, fold_conv_bn, size_generic


class RowBiasMap(nn.Module):
    """Bias of a merged kx1 + BN + 1xk + BN pair: the 1xk convolution pads the first BN's bias
    ``row_bias`` with zeros, so the exact bias is the map ``conv_1k(row_bias · 1) + out_bias``
    over one row (``(1, C_out, 1, W_out)``), computed once per input width. Subclasses set
    ``row_weight``, ``row_bias``, ``out_bias``, ``stride``, ``padding``, ``dilation`` and
    ``full_map``.

    Traced (``torch.onnx.export``, ``torch.jit.trace``), the map is computed from the input with
    standard operators (a zero row shaped like one row of ``x``, plus ``row_bias``, then the 1xk
    convolution), so the graph runs at every input size; within
    :func:`~micronet_mm.deploy.common.fixed_input_size` the trace takes the per-size map (a
    constant of a graph whose input size is fixed)."""

    def __init__(self, full_map: bool) -> None:
        super().__init__()
        self.full_map = full_map
        self._bias_maps: dict[tuple[int, int], torch.Tensor] = {}

    def bias_map(self, width: int, height: int = 1) -> torch.Tensor:
        """``(1, C_out, 1, W_out)``: the exact bias of every output column; ``height`` > 1
        repeats it over that many rows, ``(1, C_out, height, W_out)``."""
        if (height, width) not in self._bias_maps:
            row = self.row_bias.expand(1, -1, 1, width)  # (1, C_in of the 1xk conv, 1, W)
            bias = F.conv2d(row, self.row_weight, self.out_bias, (1, self.stride[1]),
                            (0, self.padding[1]), (1, self.dilation[1]),
                            groups=row.shape[1]).detach()
            self._bias_maps[(height, width)] = bias.expand(-1, -1, height, -1).contiguous()
        return self._bias_maps[(height, width)]

    def add_bias(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y`` (the bias-free convolution of ``x``) plus the bias map; with ``full_map`` over
        all of ``y``'s rows (what ONNX Runtime adds fastest)."""
        if size_generic():
            row = torch.zeros_like(x[:1, :1, :1, :]) + self.row_bias  # (1, C, 1, W)
            return y + F.conv2d(row, self.row_weight, self.out_bias, (1, self.stride[1]),
                                (0, self.padding[1]), (1, self.dilation[1]), groups=row.shape[1])
        return y + self.bias_map(int(x.shape[-1]), int(y.shape[-2]) if self.full_map else 1)



class MergedDepthwise(RowBiasMap):
    """kx1 + BN + 1xk + BN (:class:`MicroFactorizedDepthwise`) as one kxk depthwise convolution.

    The kernel of output channel o is ``P_o Q_o^T`` (the kx1 factor of its input channel times its
    1xk factor, BN scales included). The bias is not a constant: the 1xk convolution pads the
    first BN's bias with zeros, so columns within ``pad`` of the border get part of it. The bias
    is therefore the map ``bn2(conv_1k(b1 · 1))`` over one row, computed once per input width.

    Args:
        module: the factorized convolution, weights loaded.
    """

    def __init__(self, module: MicroFactorizedDepthwise, full_map: bool = False) -> None:
        super().__init__(full_map)
        k1, k2 = module.conv_k1, module.conv_1k
        w1, b1 = fold_bn(k1.weight, None, module.bn1)  # (C·m1, 1, k, 1), (C·m1,)
        w2, b2 = fold_bn(k2.weight, None, module.bn2)  # (C·m1·m2, 1, 1, k), (C·m1·m2,)
        m2 = k2.out_channels // k2.in_channels
        self.weight = nn.Parameter(w1.repeat_interleave(m2, 0) * w2)  # (C·m1·m2, 1, k, k)
        self.groups = k1.groups
        self.stride, self.padding = (k1.stride[0], k2.stride[1]), (k1.padding[0], k2.padding[1])
        self.dilation = (k1.dilation[0], k2.dilation[1])
        # what the 1xk factor needs to map the first bias b1 over a row of any width
        self.register_buffer('row_weight', w2.detach().clone())
        self.register_buffer('row_bias', b1.detach().clone().view(1, -1, 1, 1))
        self.register_buffer('out_bias', b2.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation,
                     self.groups)  # (N, C_out, H/s, W/s)
        return self.add_bias(y, x)

    def extra_repr(self) -> str:
        return (f'{self.groups}, {self.weight.shape[0]}, kernel={tuple(self.weight.shape[2:])}, '
                f'stride={self.stride}, dilation={self.dilation}')


class FactorizedDepthwise(nn.Module):
    """kx1 + BN + 1xk + BN (:class:`MicroFactorizedDepthwise` without channel multipliers) as two
    depthwise convolutions with the BN folded into their biases: exact at the borders with no
    bias map. What ``backend='onnxruntime'`` uses for multiplier-1 pairs: ONNX Runtime's NCHWc
    depthwise kernel runs kx1 then 1xk (k = 3, 5) 1.0-1.6x faster than one kxk convolution plus
    the bias-map ``Add``. Pairs with multipliers stay :class:`MergedDepthwise` (as fast either way).

    Args:
        module: the factorized convolution, weights loaded.
    """

    def __init__(self, module: MicroFactorizedDepthwise) -> None:
        super().__init__()
        self.conv_k1 = fold_conv_bn(nn.Sequential(module.conv_k1, module.bn1))
        self.conv_1k = fold_conv_bn(nn.Sequential(module.conv_1k, module.bn2))
        self.groups = self.conv_k1.groups

    @staticmethod
    def applies(module: MicroFactorizedDepthwise) -> bool:
        k1, k2 = module.conv_k1, module.conv_1k
        return k1.in_channels == k1.out_channels == k2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1k(self.conv_k1(x))  # (N, C, H/s, W/s)


def conjugate_depthwise(dw: nn.Module, perm: torch.Tensor) -> None:
    """Rewrite a per-channel ``dw`` so that ``dw(z[:, perm]) == dw'(z)[:, perm]``."""
    inv = torch.argsort(perm)  # the inverse permutation
    if isinstance(dw, FactorizedDepthwise):
        for conv in (dw.conv_k1, dw.conv_1k):
            conv.weight.data, conv.bias.data = conv.weight.data[inv], conv.bias.data[inv]
        return
    dw.weight.data = dw.weight.data[inv]
    dw.row_weight, dw.out_bias = dw.row_weight[inv], dw.out_bias[inv]
    dw.row_bias = dw.row_bias[:, inv]
    dw._bias_maps = {}



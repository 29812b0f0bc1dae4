"""Prescaled Dynamic Shift-Max: the convolution before each activation outputs λ·x, so that the
activation's hard sigmoid is an ONNX ``HardSigmoid`` that ONNX Runtime fuses into fc2's
``Gemm`` (:meth:`FastShiftMax.prescale`)."""
from __future__ import annotations

from torch import nn

from micronet_mm.ops import ExpansionBlock, LiteCombination, MicroBlockA, MicroBlockC

from .depthwise import FactorizedDepthwise, MergedDepthwise
from .pointwise import FusedPointwise
from .shift_max import FastShiftMax


def _scale_output(conv: nn.Module, lam: float) -> bool:
    """Multiply the output of a converted convolution by ``lam`` (weights and biases)."""
    if isinstance(conv, FactorizedDepthwise):
        conv = conv.conv_1k
    if isinstance(conv, (FusedPointwise, nn.Conv2d)):
        conv.weight.data, conv.bias.data = conv.weight.data * lam, conv.bias.data * lam
    elif isinstance(conv, MergedDepthwise):
        conv.weight.data = conv.weight.data * lam
        conv.row_weight, conv.out_bias = conv.row_weight * lam, conv.out_bias * lam
        conv._bias_maps = {}
    else:
        return False
    return True


def prescale_shift_max(module: nn.Module) -> None:
    """Every (convolution, Dynamic Shift-Max) pair of the blocks: the convolution outputs λ·x and
    the activation takes the hard sigmoid as is (:meth:`FastShiftMax.prescale`)."""
    pairs = []  # (convolution, the activation right after it)
    for m in module.modules():
        if isinstance(m, LiteCombination):
            pairs.append((m.depthwise, m.act))
        elif isinstance(m, MicroBlockA):
            pairs.append((m.lite.compress, m.act2))
        elif isinstance(m, MicroBlockC):
            pairs += [(m.expand, m.act1), (m.depthwise, m.act2), (m.compress, m.act3)]
        elif isinstance(m, ExpansionBlock):
            pairs.append((m.expand, m.act))
    for conv, act in pairs:
        if (isinstance(act, FastShiftMax) and act.fc1 is not None
                and act.act_max > 0 and act.input_scale == 1.0  # not twice
                and isinstance(conv, (FusedPointwise, MergedDepthwise, FactorizedDepthwise))):
            _scale_output(conv, act.prescale())



"""Which deploy form each MicroNet leaf part takes: the choices a backend makes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from micronet_mm.ops import (DynamicShiftMax, GroupPointwise, MicroFactorizedDepthwise,
                             MicroStem)

from ..common import fold_conv_bn
from .depthwise import FactorizedDepthwise, MergedDepthwise
from .pointwise import FusedPointwise
from .shift_max import FastShiftMax
from .stem import MergedStem


@dataclass(frozen=True)
class LeafRules:
    """A backend's choice of deploy form per part.

    Args:
        use_matmul: grouped 1x1 convolutions as one batched matrix product (else grouped
            ``conv2d``), :class:`FusedPointwise`.
        keep_factorized: Micro-Factorized depthwise pairs without channel multipliers stay two
            convolutions (:class:`FactorizedDepthwise`), else one kxk (:class:`MergedDepthwise`).
        full_map: merged depthwise and stem convolutions add a full ``(1, C, H, W)`` bias map
            (else one row, broadcast).
        shift_max: builds the deploy form of a :class:`DynamicShiftMax`.
    """
    use_matmul: bool
    keep_factorized: bool
    full_map: bool
    shift_max: Callable[[DynamicShiftMax], nn.Module] = FastShiftMax


def convert_leaves(module: nn.Module, rules: LeafRules) -> None:
    """Replace, recursively, every convertible leaf part by its deploy form."""
    for name, child in list(module.named_children()):
        if isinstance(child, GroupPointwise):
            new = FusedPointwise.from_group_pointwise(child, rules.use_matmul)
        elif isinstance(child, MicroFactorizedDepthwise):
            new = (FactorizedDepthwise(child)
                   if rules.keep_factorized and FactorizedDepthwise.applies(child)
                   else MergedDepthwise(child, full_map=rules.full_map))
        elif isinstance(child, MicroStem):
            new = MergedStem(child, full_map=rules.full_map)
        elif isinstance(child, DynamicShiftMax):
            new = rules.shift_max(child)
        elif (isinstance(child, nn.Sequential) and len(child) == 2
              and isinstance(child[0], nn.Conv2d) and isinstance(child[1], _BatchNorm)):
            new = fold_conv_bn(child)  # the full-rank partner's kxk depthwise
        else:
            convert_leaves(child, rules)
            continue
        setattr(module, name, new)

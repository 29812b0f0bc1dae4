"""``backend='ncnn'`` and ``backend='mnn'``: standard operators on 4-D tensors only, what pnnx
converts to ncnn layers and ncnn runs, and what MNN runs as fast as the ONNX Runtime form
(docs/deploy.md, edge runtimes) (``tools/deployment/export_onnx.py --deploy --backend ncnn|mnn``;
:mod:`micronet_mm.runtime.ncnn`, :mod:`micronet_mm.runtime.mnn`).

ncnn has no channel gather, no ``addcmul`` and no tensor above 4-D, so every part that uses
them takes its :mod:`..rewrites.four_d` form: each channel shuffle and each Shift-Max shift a
reshape to ``(N, G, M, H·W)`` with a transpose or two circular rolls (:class:`Permute4d`), the
Shift-Max hyper-function on ``(N, C, 1, 1)`` maps (:class:`Shift4dMax`), the stem as two
convolutions with its shuffle folded into the second (:class:`FactorizedStem`), the spatial
attention's softmax as global pooling (:class:`PooledSpatialAttention`). No shuffle is moved or
composed (a composition of two shuffles has no short 4-D form), except the pose head's last two,
which fold into its final convolution. Every Micro-Factorized depthwise pair stays two
convolutions with BN folded (:class:`FactorizedDepthwise`, channel multipliers included): exact
at the borders with no bias map to broadcast. BN is folded everywhere, and grouped 1x1
convolutions stay grouped convolutions.
"""
from __future__ import annotations

from torch import nn

from micronet_mm.ops import (ChannelShuffle, MicroFactorizedDepthwise, MicroStem,
                             SpatialAttention)

from ..common import ChannelPermute
from ..rewrites.depthwise import FactorizedDepthwise
from ..rewrites.four_d import FactorizedStem, PooledSpatialAttention, Shift4dMax, permute4d
from ..rewrites.leaves import LeafRules, convert_leaves
from ..rewrites.output_permutation import fold_output_permutation

RULES = LeafRules(use_matmul=False, keep_factorized=True, full_map=True, shift_max=Shift4dMax)


def _replace(module: nn.Module, kinds: tuple, make) -> None:
    """Replace, recursively, every child of one of ``kinds`` by ``make(child)``."""
    for name, child in list(module.named_children()):
        if isinstance(child, kinds):
            setattr(module, name, make(child))
        else:
            _replace(child, kinds, make)


def convert(module: nn.Module) -> None:
    """Rewrite the MicroNet parts of ``module`` in place into 4-D standard operators."""
    _replace(module, (MicroStem,), FactorizedStem)
    _replace(module, (MicroFactorizedDepthwise,), FactorizedDepthwise)
    convert_leaves(module, RULES)
    _replace(module, (SpatialAttention,), PooledSpatialAttention)
    fold_output_permutation(module, compose_pair=True)
    _replace(module, (ChannelShuffle, ChannelPermute), permute4d)


def head_programs() -> bool:
    """No: the classifier head stays pooling and two fully connected layers."""
    return False

"""``backend='pytorch'``, the default of ``switch_to_deploy``: eager PyTorch with standard
operators only, so that any exporter (``torch.onnx.export``, ``torch.export``, mmdeploy's)
meets no custom node, and the export runs at every input size.

Of the standard-operator forms it is the one measured fastest in eager PyTorch
(docs/deploy.md): grouped 1x1 convolutions run as one ``baddbmm`` over their groups (2-5x
faster than ``conv2d`` with groups, which splits the call per group); every Micro-Factorized
depthwise pair is one kxk convolution with a one-row bias map (oneDNN spends ~100 µs per
depthwise call whatever its size); every Dynamic Shift-Max is :class:`FastShiftMax`
(``index_select``, ``addcmul``, ``maximum``). ``backend='native'`` (:mod:`.native`) runs the
same model through this project's C++ operators instead, 3-4x faster in eager PyTorch, and
exports ``micronet.Program`` nodes.
"""
from __future__ import annotations

from torch import nn

from ..rewrites.leaves import LeafRules, convert_leaves
from ..rewrites.shift_max import FastShiftMax
from ..rewrites.shuffles import merge_block_permutations

RULES = LeafRules(use_matmul=True, keep_factorized=False, full_map=False,
                  shift_max=FastShiftMax)


def convert(module: nn.Module) -> None:
    """Rewrite the MicroNet parts of ``module`` in place into standard PyTorch operators."""
    convert_leaves(module, RULES)
    merge_block_permutations(module)


def head_programs() -> bool:
    """No: the classifier head stays two ``addmm`` (standard operators)."""
    return False

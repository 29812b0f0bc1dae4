"""``backend='pytorch'``: eager PyTorch (and what ``torch.compile`` / ``torch.export`` trace).

Grouped 1x1 convolutions run as one ``baddbmm`` over their groups (2-5x faster than ``conv2d``
with groups, which splits the call per group); every Micro-Factorized depthwise pair is one kxk
convolution with a one-row bias map (oneDNN spends ~100 µs per depthwise call whatever its size);
every Dynamic Shift-Max is one call of the fused C++ operator when it is built
(:class:`FusedShiftMax`), else :class:`FastShiftMax`.
"""
from __future__ import annotations

from torch import nn

from ..rewrites.leaves import LeafRules, convert_leaves
from ..rewrites.shift_max import pytorch_shift_max
from ..rewrites.shuffles import merge_block_permutations

RULES = LeafRules(use_matmul=True, keep_factorized=False, full_map=False,
                  shift_max=pytorch_shift_max)


def convert(module: nn.Module) -> None:
    """Rewrite the MicroNet parts of ``module`` in place for PyTorch."""
    convert_leaves(module, RULES)
    merge_block_permutations(module)

"""``backend='openvino'``: what ``tools/deployment/export_onnx.py --deploy --backend openvino``
exports. Every stage of Micro-Blocks (and the stem) as ONE native ``micronet.Program`` node
(a backbone that returns its last stage only, a classifier's: one node for all of them)
(:class:`NativeProgram`, :mod:`..rewrites.native_block`): its convolutions, Shift-Max
activations, shuffles and residuals in one call, in one layout. The classifier head is two
programs (pool + fc1, fc2); the export merges the three into one node
(:mod:`..rewrites.program_chain`). What has no program layer (the pose head's blocks with spatial
attention, MR-ASPP) takes the ONNX Runtime forms for convolutions and shuffles, and every
Dynamic Shift-Max there is one native ``micronet.ShiftMax`` node (:class:`NativeShiftMax`). No
shuffle is moved past a native node (its shift is index arithmetic over the trained channel order) and
nothing is prescaled (the hyper-function runs inside the node). The pose head's last
permutation is folded into its final convolution (:mod:`..rewrites.output_permutation`: exact,
and it avoids an OpenVINO CPU bug with ``Gather`` before a dense 1x1 ``Conv``).
"""
from __future__ import annotations

from torch import nn

from ..rewrites.leaves import LeafRules, convert_leaves
from ..rewrites.native_block import convert_programs
from ..rewrites.native_shift_max import NativeShiftMax
from ..rewrites.output_permutation import fold_output_permutation
from ..rewrites.shuffles import merge_block_permutations

RULES = LeafRules(use_matmul=False, keep_factorized=True, full_map=True,
                  shift_max=NativeShiftMax)


def convert(module: nn.Module) -> None:
    """Rewrite the MicroNet parts of ``module`` in place for OpenVINO with the extension."""
    convert_programs(module)
    convert_leaves(module, RULES)
    merge_block_permutations(module)
    fold_output_permutation(module)


def head_programs() -> bool:
    """The classifier head as two programs (pool + fc1, fc2): 0.09 against 0.18 ms for M2's
    head as OpenVINO's ``ReduceMean`` and two MLAS ``FullyConnected`` (docs/deploy.md, Kernels)."""
    return True

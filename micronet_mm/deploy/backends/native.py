"""``backend='native'``: eager PyTorch with this project's C++ operators (and what
``torch.compile`` / ``torch.export`` / AOTInductor trace); the ONNX export of this form holds
``micronet.Program`` nodes, which only OpenVINO with the extension runs. Ask for it by name:
the default backend, ``'pytorch'`` (:mod:`.pytorch`), has standard operators only.

Where the C++ operators are built (``tools/setup_env.sh``; :func:`fused_shift_max.active`), the
stem and every stage of Micro-Blocks become ONE ``micronet::program`` call each (a
backbone that returns its last stage only, a classifier's: one call for all of them)
(:class:`NativeProgram`, :mod:`..rewrites.native_block`: the kernels of the OpenVINO backend,
3-4x faster than the per-layer form below in eager PyTorch), and the classifier head two
(pool + fc1, fc2). What has no program layer (the pose head's blocks with spatial attention,
MR-ASPP), and everything when the operators are not built, takes the per-layer form of
:mod:`.pytorch`:
grouped 1x1 convolutions run as one ``baddbmm`` over their groups (2-5x faster than ``conv2d``
with groups, which splits the call per group); every Micro-Factorized depthwise pair is one kxk
convolution with a one-row bias map (oneDNN spends ~100 µs per depthwise call whatever its size);
every Dynamic Shift-Max is one call of the fused C++ operator when it is built
(:class:`FusedShiftMax`), else :class:`FastShiftMax`.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from torch import nn

from micronet_mm.ops import fused_shift_max

from ..rewrites.leaves import convert_leaves
from ..rewrites.native_block import convert_programs
from ..rewrites.shift_max import pytorch_shift_max
from ..rewrites.shuffles import merge_block_permutations
from . import pytorch

RULES = dataclasses.replace(pytorch.RULES, shift_max=pytorch_shift_max)


#: False: the per-layer form even where the operators are built (see :func:`per_layer`)
PROGRAMS = True


@contextlib.contextmanager
def per_layer() -> Iterator[None]:
    """Inside the ``with`` block, :func:`convert` makes the per-layer form even where the
    operators are built (tests, benchmarks, inspecting the layers)."""
    global PROGRAMS
    saved, PROGRAMS = PROGRAMS, False
    try:
        yield
    finally:
        PROGRAMS = saved


def convert(module: nn.Module) -> None:
    """Rewrite the MicroNet parts of ``module`` in place for PyTorch with the C++ operators."""
    if PROGRAMS and fused_shift_max.active():
        convert_programs(module)
    convert_leaves(module, RULES)
    merge_block_permutations(module)


def head_programs() -> bool:
    """The classifier head as two programs where the operators are built (and not
    :func:`per_layer`): faster than the per-layer ``addmm`` form (:mod:`..rewrites.cls_head`)."""
    return PROGRAMS and fused_shift_max.active()

"""The fused Dynamic Shift-Max operator: loading, autograd, fake kernels, and the switch.

``micronet::shift_max(x, coef, index)`` computes Eq. 4 from final coefficients ``coef``
``(N, K, J, C)`` in one C++ pass (the native kernels of ``micronet_mm/csrc/shift_max_kernels.h``,
which the layer programs and the OpenVINO node run too): it reads x once, writes y
once, and takes the shift as index arithmetic, where :class:`DynamicShiftMax`'s reference path
stacks the J shifted copies and the ``K·J`` products. Its backward is one C++ pass too, so
training keeps no ``(K, J, N, C, H, W)`` intermediate. The hyper-function stays in autograd-able
torch ops for training. ``micronet::shift_max_dynamic`` adds the hyper-function to the same
call; it is the deploy form of a Shift-Max outside the layer programs (the pose head's, for
example): one node per activation. The same library holds ``micronet::program`` (whole stems and
stages in the format of :mod:`micronet_mm.csrc.program_format`, the PyTorch deploy form of the
backbones); its fake kernel is registered here as well.

The library is built by ``tools/setup_env.sh`` (:mod:`micronet_mm.csrc.build`) and only
loaded here; nothing compiles at run time. Without it (or on another device or dtype than CPU
float32 / float64, or inside an ONNX export) the reference code runs, and a missing library is
reported by ONE warning. :func:`choose` makes that choice per input: a CUDA tensor or a
float16 / bfloat16 one (AMP) is never handed to the C++ kernels, and the first such input is
noted in one log line.

Switches: the environment variable ``MICRONET_FUSED_SHIFT_MAX=0`` turns the fused path off for
the process; :func:`use_fused` turns it off (or on) inside a ``with`` block. :func:`available`
says whether the library is loaded, :func:`calls` counts the fused calls made from Python.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch
from mmengine.logging import print_log

from micronet_mm.csrc.build import library_path
from micronet_mm.csrc.program_format import output_shape

_state = {'loaded': None, 'warned': False, 'calls': 0, 'noted': set(),
          'enabled': os.environ.get('MICRONET_FUSED_SHIFT_MAX', '1') != '0'}


def _register_python_parts() -> None:
    """Autograd formula and fake (meta) kernels, for autograd, torch.compile and torch.export."""

    @torch.library.register_fake('micronet::shift_max')
    def _(x, coef, index):
        return x.new_empty(x.shape)

    @torch.library.register_fake('micronet::shift_max_backward')
    def _(grad, x, coef, index):
        return x.new_empty(x.shape), coef.new_empty(coef.shape)

    @torch.library.register_fake('micronet::shift_max_dynamic')
    def _(x, w1, b1, w2, b2, init, act_max, index):
        return x.new_empty(x.shape)

    @torch.library.register_fake('micronet::program')
    def _(x, weights, tables, program):
        return x.new_empty(output_shape(list(program), tuple(x.shape)))

    def setup_context(ctx, inputs, output):
        x, coef, index = inputs
        ctx.save_for_backward(x, coef, index)

    def backward(ctx, grad):
        x, coef, index = ctx.saved_tensors
        gx, gcoef = torch.ops.micronet.shift_max_backward(grad, x, coef, index)
        return gx, gcoef, None

    torch.library.register_autograd('micronet::shift_max', backward,
                                    setup_context=setup_context)


def available() -> bool:
    """Whether the built library is loaded (it is loaded on the first call)."""
    if _state['loaded'] is None:
        path = library_path()
        _state['loaded'] = path.is_file()
        if _state['loaded']:
            torch.ops.load_library(str(path))
            _register_python_parts()
    return _state['loaded']


def active() -> bool:
    """Whether :class:`DynamicShiftMax` and the PyTorch deploy mode use the fused operator now:
    switched on and built. Warns once when switched on but not built."""
    if not _state['enabled']:
        return False
    if not available() and not _state['warned']:
        _state['warned'] = True
        warnings.warn(f'micronet_mm: the fused Dynamic Shift-Max operator is not built '
                      f'({library_path()} is missing), so the slower reference code runs; build '
                      f'it with: bash tools/setup_env.sh', stacklevel=3)
    return available()


def supports(x: torch.Tensor) -> bool:
    """Whether the fused kernels take ``x``: a CPU float32 / float64 tensor, and no ONNX export
    running (ONNX has no such operator: the export takes the reference code's standard ops)."""
    return unsupported_reason(x) is None


def unsupported_reason(x: torch.Tensor) -> str | None:
    """Why the fused kernels (CPU float32 / float64 only) cannot take ``x``, or ``None``."""
    if x.device.type != 'cpu':
        return f'the input is on {x.device.type}'
    if x.dtype not in (torch.float32, torch.float64):
        return f'the input is {str(x.dtype).replace("torch.", "")} (mixed precision)'
    if torch.onnx.is_in_onnx_export():
        return 'an ONNX export is running'
    return None


def choose(x: torch.Tensor) -> str:
    """The implementation :class:`DynamicShiftMax` runs for ``x``: ``'fused'`` (the C++
    operator: CPU float32 / float64, switched on and built) or ``'reference'`` (standard ops,
    which ``torch.compile`` fuses on any device). The first time a CUDA or reduced-precision
    input takes the reference code, one line says so (not while ``torch.compile`` traces)."""
    reason = unsupported_reason(x)
    if reason is None:
        return 'fused' if active() else 'reference'
    if x.device.type != 'cpu' or x.dtype not in (torch.float32, torch.float64):
        _note_reference(reason)
    return 'reference'


def _note_reference(reason: str) -> None:
    if torch.compiler.is_compiling() or reason in _state['noted']:
        return
    _state['noted'].add(reason)
    print_log(f'micronet_mm: Dynamic Shift-Max runs its reference code because {reason} (the '
              f'fused C++ operator takes CPU float32/float64 tensors only); torch.compile '
              f'fuses the reference code into generated kernels', logger='current')


@contextlib.contextmanager
def use_fused(flag: bool) -> Iterator[None]:
    """Switch the fused path on or off inside a ``with`` block (process-wide)."""
    before = _state['enabled']
    _state['enabled'] = flag
    try:
        yield
    finally:
        _state['enabled'] = before


def calls() -> int:
    """How many fused calls :func:`shift_max` and :func:`shift_max_dynamic` made (eager)."""
    return _state['calls']


def shift_max(x: torch.Tensor, coef: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Eq. 4 from final coefficients, differentiable in ``x`` and ``coef``.

    Args:
        x: ``(N, C, H, W)``.
        coef: ``(N, K, J, C)``, the coefficients ``a^k_{i,j}``.
        index: ``(J, C)`` int64, the source channel of each shift (``DynamicShiftMax.index``).

    Returns:
        ``(N, C, H, W)``.
    """
    _state['calls'] += 1
    return torch.ops.micronet.shift_max(x, coef, index)


def shift_max_dynamic(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                      b2: torch.Tensor, init: torch.Tensor, act_max: float,
                      index: torch.Tensor) -> torch.Tensor:
    """Hyper-function and Eq. 4 in one call (inference only).

    Args:
        x: ``(N, C, H, W)``.
        w1: fc1's weight ``(S, C)``; b1: its bias ``(S,)``.
        w2: fc2's weight ``(K·J·C, S)``; b2: its bias ``(K·J·C,)``; rows laid out
            ``[k][j][c]``.
        init: ``(K, J)``, the coefficient offsets.
        act_max: coefficients vary in ``init ± act_max``.
        index: ``(J, C)`` int64, the source channel of each shift.

    Returns:
        ``(N, C, H, W)``.
    """
    _state['calls'] += 1
    return torch.ops.micronet.shift_max_dynamic(x, w1, b1, w2, b2, init, act_max, index)

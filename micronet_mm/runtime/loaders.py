"""Which runtime module opens an exported model: one entry per runtime.

Every runtime module has ``load(path, threads=1) -> runner``, a :class:`Runner`: ``runner(x)``
takes the normalised image batch ``(N, 3, H, W)`` float32 and returns the model's outputs as a
list of arrays, and ``runner.output_names`` names them. The modules import their runtime's
package only when a model is loaded, so that a missing runtime is an error of that runtime
alone.
"""
from __future__ import annotations

import importlib
import os.path as osp
from collections.abc import Callable, Sequence

import numpy as np

from micronet_mm.errors import InvalidInputError, UserError

#: runtime name -> its module
RUNTIMES = {'onnxruntime': 'micronet_mm.runtime.onnxruntime',
            'openvino': 'micronet_mm.runtime.openvino',
            'mnn': 'micronet_mm.runtime.mnn',
            'ncnn': 'micronet_mm.runtime.ncnn'}

#: file suffix -> the runtime that opens it by default
SUFFIXES = {'.onnx': 'onnxruntime', '.xml': 'openvino', '.mnn': 'mnn', '.param': 'ncnn'}


class Runner:
    """``runner(x) -> list of outputs``: float32 NCHW images in, numpy outputs in the exported
    order, batch first.

    Args:
        run: ``images -> outputs``.
        output_names: the outputs' names, in order.
    """

    def __init__(self, run: Callable[[np.ndarray], list[np.ndarray]],
                 output_names: Sequence[str]) -> None:
        self._run = run
        self.output_names = list(output_names)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f'expected images (N, C, H, W), got an array of shape {x.shape}')
        return self._run(x)


def runtime_for(path: str, runtime: str | None = None) -> str:
    """``runtime``, checked, or the runtime that ``path``'s suffix calls for.

    Raises:
        InvalidInputError: an unknown runtime or suffix (one line naming the legal ones).
    """
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise InvalidInputError(f'unknown runtime {runtime!r}; legal values: '
                                    f'{", ".join(RUNTIMES)}')
        return runtime
    suffix = osp.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(f'{path}: cannot tell the runtime from the suffix {suffix!r}; '
                                f'known suffixes: {", ".join(SUFFIXES)} (or name the runtime)')
    return SUFFIXES[suffix]


def load(path: str, runtime: str | None = None, threads: int = 1):
    """The runner of the exported model ``path`` in ``runtime`` (default: from the suffix).

    Raises:
        UserError: unknown runtime or suffix, or the runtime's package is not installed.
    """
    name = runtime_for(path, runtime)
    try:
        module = importlib.import_module(RUNTIMES[name])
    except ImportError as e:
        raise UserError(f'runtime {name} is not available ({e}); install it (pip install '
                        f'-r requirements.txt)') from None
    try:
        return module.load(path, threads=threads)
    except ImportError as e:
        raise UserError(f'runtime {name} is not installed ({e}); install it (pip install '
                        f'-r requirements.txt)') from None

"""MNN: convert an ONNX file (or a model, exported to ONNX first) to ``.mnn``, load it, run it.

The conversion calls the MNN wheel's converter extension (``_tools.mnnconvert``) in a child
process of this interpreter, with a time limit. Never the ``mnnconvert`` console script nor
``MNN.tools``: importing ``MNN.tools.mnnconvert`` runs ``pip install -U`` of a usage-logging SDK
on whatever ``pip`` comes first on ``PATH``, and the script then sends a log record. Weights
stay float32 (no ``--fp16``); the names and order of the ONNX outputs are kept.

:func:`load` opens the file with MNN's Express module API on the CPU in high precision (no
fp16 / bf16 arithmetic), ``threads`` threads; the batch runs as one call.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import sys
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

from micronet_mm.errors import UserError
from micronet_mm.fileio import copy_atomic, refuse_overwrite

from .edge import CONVERT_TIMEOUT, check_model_file, run_converter, trace
from .loaders import Runner

#: what the child process runs: the converter extension alone, never ``MNN.tools``
_CONVERT = 'import sys, _tools; sys.exit(0 if _tools.mnnconvert(sys.argv) else 1)'


def convert(model_or_file, out: str, *, shape: Sequence[int] = (1, 3, 224, 224),
            output_names: Sequence[str] | None = None, force: bool = False,
            timeout: float = CONVERT_TIMEOUT, opset: int = 17) -> None:
    """Write ``out`` (``.mnn``).

    Args:
        model_or_file: an ONNX file, or a module (``images -> tensor or tuple``, eval mode)
            exported to ONNX at ``shape`` with a dynamic batch.
        out: the ``.mnn`` file to write.
        shape: the input shape a module is exported at.
        output_names: names of a module's outputs (default ``output0``, ``output1``, ...).
        force: replace an existing ``out``.
        timeout: seconds the converter may run.
        opset: ONNX opset of a module's export.

    Raises:
        UserError: ``out`` exists (without ``force``), or the converter failed.
    """
    if not out.endswith('.mnn'):
        raise UserError(f'{out}: the MNN model file must end in .mnn')
    refuse_overwrite(out, force)
    with tempfile.TemporaryDirectory(prefix='micronet-mnn-') as tmp:
        if isinstance(model_or_file, str):
            check_model_file(model_or_file, '.onnx')
            src = osp.abspath(model_or_file)
        else:
            src = osp.join(tmp, 'model.onnx')
            trace(model_or_file, shape, src, onnx=True, output_names=output_names, opset=opset)
        dst = osp.join(tmp, 'model.mnn')
        run_converter([sys.executable, '-c', _CONVERT, '-f', 'ONNX', '--modelFile', src,
                       '--MNNModel', dst, '--bizCode', 'micronet_mm'], tmp, 'the MNN converter',
                      timeout)
        if not osp.isfile(dst):
            raise UserError('the MNN converter wrote no model')
        copy_atomic(dst, out)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Within: the process's standard output goes nowhere (MNN's library prints the CPU's
    features to it when it loads)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def load(path: str, threads: int = 1) -> Runner:
    """Open ``path`` (``.mnn``) in MNN: CPU, high precision, ``threads`` threads.

    Returns:
        ``runner(images (N, C, H, W) float32) -> [output, ...]`` in the exported order, with
        ``runner.output_names``.
    """
    check_model_file(path, '.mnn')
    with _quiet_stdout():
        import MNN
        manager = MNN.nn.create_runtime_manager(
            ({'backend': 'CPU', 'numThread': threads, 'precision': 'high'},))
        net = MNN.nn.load_module_from_file(path, [], [], runtime_manager=manager)
    if net is None:
        raise UserError(f'{path}: MNN cannot read this model')
    info = net.get_info()
    inputs, outputs = info['inputNames'], info['outputNames']
    if len(inputs) != 1:
        raise UserError(f'{path}: expected one input, the model has {len(inputs)}')
    expr = MNN.expr

    def run(x: np.ndarray) -> list[np.ndarray]:
        got = net.forward([expr.const(x, list(x.shape), expr.NCHW)])
        return [np.array(expr.convert(y, expr.NCHW).read(), dtype=np.float32) for y in got]

    return Runner(run, outputs)

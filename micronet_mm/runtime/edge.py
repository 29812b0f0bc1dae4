"""What the edge-runtime wrappers (:mod:`.ncnn`, :mod:`.mnn`) share: tracing a model into a
file the converters read, and running a converter as a child process with a time limit (the
runner they return is :class:`~.loaders.Runner`)."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import warnings
from collections.abc import Sequence

from micronet_mm.errors import UserError

#: seconds a converter may run before it is stopped
CONVERT_TIMEOUT = 600


def check_model_file(path: str, ext: str) -> None:
    """Raise :class:`UserError` unless ``path`` is an existing file ending in ``ext``."""
    if not osp.isfile(path):
        raise UserError(f'model file not found: {path}')
    if not path.endswith(ext):
        raise UserError(f'{path}: expected a {ext} file')


def run_converter(cmd: list[str], cwd: str, what: str, timeout: float = CONVERT_TIMEOUT
                  ) -> str:
    """Run a converter ``cmd`` in ``cwd`` (a folder this process made), its output captured;
    returns that output.

    Raises:
        UserError: it ran longer than ``timeout`` seconds, or exited with an error (the last
            line of its output named).
    """
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, 'OMP_NUM_THREADS': '1'})
    except subprocess.TimeoutExpired:
        raise UserError(f'{what} ran longer than {timeout:g} s and was stopped') from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        last = next((line for line in reversed(output.splitlines()) if line.strip()), '')
        raise UserError(f'{what} failed (exit status {proc.returncode}): {last.strip()}')
    return output


def trace(model, shape: Sequence[int], path: str, onnx: bool,
          output_names: Sequence[str] | None = None, opset: int = 17) -> list[str]:
    """Write ``model`` (``images -> tensor or tuple of tensors``, eval mode) traced at the input
    shape ``(N, C, H, W)`` to ``path``: TorchScript (``onnx=False``) or ONNX with a dynamic
    batch, height and width. Returns the output names (``output_names`` or ``output0``,
    ``output1``, ...)."""
    import torch
    x = torch.zeros(*shape)
    with torch.no_grad():
        out = model(x)
        count = len(out) if isinstance(out, (tuple, list)) else 1
        names = list(output_names) if output_names else [f'output{i}' for i in range(count)]
        if len(names) != count:
            raise ValueError(f'{len(names)} output names for {count} outputs')
        if onnx:
            axes = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                    **{n: {0: 'batch'} for n in names}}
            torch.onnx.export(model, (x,), path, input_names=['input'], output_names=names,
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        else:
            with warnings.catch_warnings():  # deprecated in torch 2.14; what pnnx reads
                warnings.filterwarnings('ignore', message='.*torch.jit.trace',
                                        category=FutureWarning)
                torch.jit.trace(model, x, check_trace=False).save(path)
    return names

"""Deploy backends: each module has ``convert(module)``, which rewrites the MicroNet parts of a
module in place (eval mode, inside ``torch.no_grad``) into what its runtime runs fastest, and
``head_programs()``, whether the classifier head becomes native programs
(:func:`~..rewrites.cls_head.convert_cls_head`).

A new runtime (e.g. ``openvino``) is one module here plus one entry in :data:`BACKENDS`.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from . import onnxruntime, openvino, pytorch

#: backend name -> its ``convert(module)``
BACKENDS: dict[str, Callable[[nn.Module], None]] = {
    'pytorch': pytorch.convert,
    'onnxruntime': onnxruntime.convert,
    'openvino': openvino.convert,
}

#: backend name -> its ``head_programs()``
HEAD_PROGRAMS: dict[str, Callable[[], bool]] = {
    'pytorch': pytorch.head_programs,
    'onnxruntime': onnxruntime.head_programs,
    'openvino': openvino.head_programs,
}

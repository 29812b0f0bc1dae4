"""Deploy backends: each module has ``convert(module)``, which rewrites the MicroNet parts of a
module in place (eval mode, inside ``torch.no_grad``) into what its runtime runs fastest, and
``head_programs()``, whether the classifier head becomes native programs
(:func:`~..rewrites.cls_head.convert_cls_head`).

A new runtime (e.g. ``openvino``) is one module here plus one entry in ``_MODULES``.
:data:`DEFAULT` is ``'pytorch'``, standard operators only: a model converted without naming a
backend exports through any exporter; the forms with this project's native operators
(``'native'``, ``'openvino'``) are asked for by name.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from . import edge, native, onnxruntime, openvino, pytorch

_MODULES = {'pytorch': pytorch, 'native': native, 'onnxruntime': onnxruntime,
            'openvino': openvino, 'ncnn': edge, 'mnn': edge}

#: the backend of ``switch_to_deploy(model)``: standard operators, fast in eager PyTorch
DEFAULT = 'pytorch'

#: backend name -> its ``convert(module)``
BACKENDS: dict[str, Callable[[nn.Module], None]] = {k: m.convert for k, m in _MODULES.items()}

#: backend name -> its ``head_programs()``
HEAD_PROGRAMS: dict[str, Callable[[], bool]] = {k: m.head_programs for k, m in _MODULES.items()}


def check_backend(backend: str) -> None:
    """Raise ``ValueError`` naming the legal values unless ``backend`` is one."""
    if backend not in BACKENDS:
        raise ValueError(f'backend={backend!r}; legal values: {list(BACKENDS)}')

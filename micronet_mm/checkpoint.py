"""Safe loading of mmengine checkpoints under torch >= 2.6 (``weights_only=True`` by default).

mmengine 0.10.7 saves a ``message_hub`` with ``HistoryBuffer`` objects (numpy arrays inside) and
numpy scalars in ``meta``. torch's weights-only unpickler refuses them, which breaks
``tools/test.py``, ``load_from`` and ``resume``. Rather than switch ``weights_only`` off (a
checkpoint from the internet must never run code), we allow-list exactly the types mmengine
writes. Anything else (an arbitrary pickled object) is still refused by torch.
"""
from __future__ import annotations

import pickle

import numpy as np
import torch


def _history_buffer_getattr(obj, name: str):
    """Stands in for ``builtins.getattr`` while unpickling: mmengine pickles the statistics
    methods of ``HistoryBuffer`` as ``getattr(HistoryBuffer, 'mean')``. Nothing else is allowed,
    so a checkpoint cannot reach other attributes (``getattr(np.ndarray, 'tofile')``, ...)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = {'min', 'max', 'mean', 'current', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'checkpoint asks for getattr({obj!r}, {name!r}); refused')


def mmengine_safe_globals() -> list:
    """The classes and functions that mmengine checkpoints need to unpickle."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtype_classes = [type(np.dtype(t)) for t in
                     ('float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8',
                      'uint8', 'bool')]
    return [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
            *dtype_classes, (_history_buffer_getattr, 'builtins.getattr')]


def allow_mmengine_checkpoints() -> None:
    """Register :func:`mmengine_safe_globals` with ``torch.serialization`` (idempotent)."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())

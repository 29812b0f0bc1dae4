"""Read PaddleClas ``.pdparams`` files without paddle and put them into the official layout.

PaddleClas's MicroNet (``ppcls/arch/backbone/model_zoo/micronet.py``, "heavily based on" the
official code) has the official state-dict keys in the official order. Its file differs in three
ways, undone by :func:`paddle_to_official`:

- BN statistics are ``_mean`` / ``_variance`` (official: ``running_mean`` / ``running_var``,
  plus ``num_batches_tracked``, which PaddleClas does not have);
- Linear weights are stored ``[in, out]`` (official: ``[out, in]``);
- ``paddle.save`` adds a ``StructuredToParameterName@@`` table (str -> str), dropped here.

The result goes through the official converter (:mod:`micronet_mm.converters`), so there is one
mapping to our names.

A ``.pdparams`` file is a plain pickle (protocol 2-4) of a dict of numpy arrays, as written by
``paddle.save``: arrays through ``numpy.core.multiarray._reconstruct`` (``numpy._core`` with
numpy 2) + ``__setstate__``, raw bytes through ``_codecs.encode`` under protocol 2, and, in
paddle 2.1's format, each tensor as a ``(name, ndarray)`` tuple built by ``builtins.tuple``.
:func:`load_pdparams` unpickles with its own restricted unpickler: the only globals it resolves
are stand-ins for exactly these, which build numeric arrays and nothing else (for numpy, the
guarded ones of :mod:`micronet_mm.checkpoint`). Every other global (``os.system``,
``builtins.eval``, any class) is refused before it is called, and object, string or structured
dtypes are refused before numpy sees the array's bytes.
"""
from __future__ import annotations

import io
import pickle
from collections import OrderedDict

import numpy as np
import torch

from micronet_mm import checkpoint
from micronet_mm.converters import ConversionError
from micronet_mm.limits import LimitError, scan_pickle

NAME_TABLE = 'StructuredToParameterName@@'
_NUMERIC_KINDS = 'biufc'  # bool, int, uint, float, complex
_STATS = {'_mean': 'running_mean', '_variance': 'running_var'}


def _encode(text, encoding='utf-8'):
    """``_codecs.encode`` as protocol 2 uses it for raw bytes: ``encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding != 'latin1':
        raise pickle.UnpicklingError('refused: _codecs.encode other than (str, "latin1")')
    return text.encode('latin1')


def _tuple(items=()):
    """``builtins.tuple`` of an already unpickled tuple or list (paddle 2.1's tensors)."""
    if not isinstance(items, (tuple, list)):
        raise pickle.UnpicklingError(f'refused: tuple({type(items).__name__})')
    return tuple(items)


def _ordered_dict():
    return OrderedDict()


_MULTIARRAY = ('numpy.core.multiarray', 'numpy._core.multiarray')
_ALLOWED = {  # the numpy entries: the guarded stand-ins of micronet_mm.checkpoint
    **{(m, '_reconstruct'): checkpoint._reconstruct for m in _MULTIARRAY},
    ('numpy', 'ndarray'): checkpoint._CheckedArray,
    ('numpy', 'dtype'): checkpoint._numeric_dtype,
    ('_codecs', 'encode'): _encode,
    ('builtins', 'tuple'): _tuple,
    ('__builtin__', 'tuple'): _tuple,
    ('collections', 'OrderedDict'): _ordered_dict,
}


class _PdparamsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f'refused global {module}.{name} (a .pdparams file holds numpy arrays only)'
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('refused: persistent ids')


def _array_of(key: str, value) -> np.ndarray:
    """The numeric array stored under ``key`` (plain, or paddle 2.1's ``(name, array)``)."""
    if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)):
        value = value[1]
    if type(value) is not np.ndarray:
        raise ConversionError(f'not a parameter file: {key!r} holds a {type(value).__name__}, '
                              'not a numpy array')
    if value.dtype.kind not in _NUMERIC_KINDS or value.dtype.hasobject:
        raise ConversionError(f'not a parameter file: {key!r} has dtype {value.dtype}')
    return value


def load_pdparams(path: str) -> OrderedDict:
    """The arrays of a ``.pdparams`` file by name, without its name table; never runs code.

    Raises:
        ConversionError: the file is missing, not a pickle, asks for anything but numeric numpy
            arrays, or is not a flat dict of them.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise ConversionError(f'cannot read {path}: {e.strerror}') from None
    try:
        scan_pickle(io.BytesIO(data), path)  # opcodes and container sizes, before unpickling
    except LimitError:
        raise
    except ValueError as e:  # an unknown opcode, truncated
        raise ConversionError(f'cannot read {path} as a .pdparams file (not a pickle: '
                              f'{e})') from None
    try:
        obj = checkpoint.as_plain_data(_PdparamsUnpickler(io.BytesIO(data)).load(), path)
    except Exception as e:  # refused global or dtype, truncated file, not a pickle, ...
        first = next((line for line in str(e).splitlines() if line.strip()), '')
        raise ConversionError(f'cannot read {path} as a .pdparams file '
                              f'({type(e).__name__}{": " if first else ""}{first[:200]})') from None
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f'{path}: expected a non-empty dict of arrays, got '
                              f'{type(obj).__name__}')
    table = obj.get(NAME_TABLE, {})
    if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ConversionError(f'{path}: {NAME_TABLE} is not a table of names')
    bad = [k for k in obj if not isinstance(k, str)]
    if bad:
        raise ConversionError(f'{path}: non-string keys {bad[:5]}')
    return OrderedDict((k, _array_of(k, v)) for k, v in obj.items() if k != NAME_TABLE)


def paddle_to_official(params: dict) -> OrderedDict:
    """PaddleClas MicroNet arrays -> an official-layout state dict of tensors (same order)."""
    out = OrderedDict()
    for key, array in params.items():
        head, _, leaf = key.rpartition('.')
        tensor = torch.from_numpy(np.array(array))  # a copy: writable, owns its memory
        if leaf == 'weight' and tensor.ndim == 2:  # paddle Linear: [in, out]
            tensor = tensor.t().contiguous()
        out[f'{head}.{_STATS.get(leaf, leaf)}' if head else key] = tensor
        if leaf == '_variance':
            out[f'{head}.num_batches_tracked'] = torch.tensor(0, dtype=torch.long)
    return out

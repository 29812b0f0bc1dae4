"""The one way checkpoints are read: :func:`safe_load`, and :func:`check_weights` for inference.

Threat model: a checkpoint is untrusted data (downloaded, shared). Loading it must never run
code, never crash the process and never execute text stored in it. What is loaded:

- ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only; pickled
  callables (``__reduce__`` payloads) are refused by torch.
- On top, exactly what mmengine checkpoints hold (its ``message_hub`` keeps ``HistoryBuffer``
  objects with numpy arrays; ``meta`` holds numpy scalars): mmengine's ``HistoryBuffer``, its
  statistics methods through a guarded ``getattr``, and numpy arrays, scalars and dtypes of
  numeric kinds only (bool, int, uint, float, complex). The numpy entries are guarded stand-ins
  for the allow-listed callables, because torch calls an allow-listed global with whatever
  arguments the file gives and calls ``__setstate__`` of allow-listed classes with whatever
  state it gives: a real ``np.dtype`` would accept ``'O'`` (or a structured dtype with object
  fields, via ``dtype.__setstate__``), and an object array built from raw bytes turns those
  bytes into pointers. So ``numpy.dtype`` resolves to :func:`_numeric_dtype` (numeric type
  strings only, always a fresh copy), ``numpy.ndarray`` to :class:`_CheckedArray` (its
  ``__setstate__`` rebuilds the dtype from its type string and refuses any non-numeric one
  before numpy sees the bytes), ``_reconstruct`` and ``scalar`` to checked wrappers. The numpy
  dtype classes are registered under names no pickle can spell (they contain a newline), so
  that only torch's BUILD step reaches them. After loading, arrays are plain ``np.ndarray``
  views again.
- Config text stored in a checkpoint (``meta['cfg']``, ``meta['config']``,
  ``message_hub['runtime_info']['cfg']``) is never executed as stored: mmengine passes it to
  ``Config.fromstring``, which executes it (``Runner.resume``, ``BaseInferencer`` without a
  config). It is read as data (:func:`config_text_as_data`: literal assignments only, no
  ``_base_``, ``custom_imports`` of ``micronet_mm.models`` or of modules already imported
  only) and replaced by literal-only text made from that data; text that is not plain data is
  dropped. Every ``type`` in it must be a registered one and what only a training run uses is
  removed (:mod:`micronet_mm.stored_config`); another type refuses the checkpoint. Resume and
  the tools use the config the user passes.
- Before torch reads the file, its size and pickle work are checked
  (:func:`micronet_mm.limits.check_checkpoint_file`): zip records that inflate far beyond the
  file, a large pickle, too many opcodes or items in one container refuse it.

``import micronet_mm`` installs all this process-wide (:func:`allow_mmengine_checkpoints`): every
``torch.load`` gets the guarded numpy entries, and mmengine's ``CheckpointLoader`` (behind
``load_from``, ``resume``, ``init_cfg=Pretrained``, the toolboxes' ``init_model`` and
inferencers) reads local files with :func:`safe_load` and cleans what other schemes return.
"""
from __future__ import annotations

import ast
import importlib
import math
import os
import os.path as osp
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch

from micronet_mm.errors import UserError
from micronet_mm.limits import check_checkpoint_file
from micronet_mm.stored_config import StoredConfigError, check_stored_config

multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
NUMERIC_KINDS = 'biufc'  # bool, signed and unsigned int, float, complex
STORED_CONFIG_KEYS = ('cfg', 'config')


class CheckpointError(UserError):
    """A checkpoint file cannot be used: missing, empty, truncated, not a PyTorch file."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint holds something other than plain data; it was refused while loading."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's weights do not fit the model (another architecture or head)."""


def _refuse(what: str):
    raise pickle.UnpicklingError(f'refused {what}')


def _checked_dtype(dtype) -> np.dtype:
    """The canonical numeric dtype equal to ``dtype``; anything else is refused."""
    if not isinstance(dtype, np.dtype):
        _refuse(f'a numpy array or scalar whose dtype is a {type(dtype).__name__}')
    if dtype.fields is not None or dtype.subdtype is not None or dtype.hasobject:
        _refuse(f'numpy dtype {dtype!r} (structured, sub-array or object)')
    canonical = np.dtype(dtype.str)  # rebuilt from the type string, not the pickled object
    if canonical.kind not in NUMERIC_KINDS or canonical.itemsize != dtype.itemsize:
        _refuse(f'numpy dtype {dtype!r} (only bool, int, uint, float and complex load)')
    return canonical


def _numeric_dtype(spec, align=False, copy=True) -> np.dtype:
    """Stands in for ``numpy.dtype`` while unpickling: numeric type strings only ('f8', 'b1').

    A copy, as numpy's own unpickling makes: the ``BUILD`` (``__setstate__``) that follows sets
    its byte order. Whatever else a forged ``BUILD`` changes on it (fields, flags) never
    reaches an array: arrays and scalars take the dtype rebuilt from its type string
    (:func:`_checked_dtype`)."""
    if not isinstance(spec, str) or not re.fullmatch(r'[<>|=]?[biufc?][0-9]{0,2}', spec):
        _refuse(f'numpy dtype {spec!r} (only bool, int, uint, float and complex load)')
    try:
        dtype = np.dtype(spec, False, True)
    except TypeError:
        _refuse(f'numpy dtype {spec!r} (not a dtype)')
    _checked_dtype(dtype)
    return dtype


class _CheckedArray(np.ndarray):
    """Stands in for ``numpy.ndarray`` while unpickling; only :func:`_reconstruct` makes one.

    ``__setstate__`` (torch's BUILD) checks the state before numpy turns its bytes into an
    array: numeric dtype, a shape of non-negative ints, raw bytes of exactly that size."""

    def __new__(cls, *args, **kwargs):  # REDUCE / NEWOBJ on 'numpy.ndarray'
        _refuse('a direct numpy.ndarray(...) call')

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            _refuse('a numpy array state that is not (version, shape, dtype, fortran, data)')
        version, shape, dtype, fortran, data = state
        dtype = _checked_dtype(dtype)
        if (not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape)
                or type(fortran) is not bool or not isinstance(data, (bytes, bytearray))
                or len(data) != math.prod(shape) * dtype.itemsize):  # Python ints: no wrap
            _refuse(f'a numpy array state with shape {shape!r} and {type(data).__name__} data')
        super().__setstate__((version, shape, dtype, fortran, data))

    def __reduce__(self):  # saved again (e.g. a resumed message hub): as a plain ndarray
        return self.view(np.ndarray).__reduce__()


def _reconstruct(cls, shape, typecode):
    """Stands in for numpy's ``_reconstruct``: the empty array that ``__setstate__`` fills."""
    if cls is not _CheckedArray or shape != (0,) or typecode not in (b'b', 'b'):
        _refuse(f'_reconstruct({cls!r}, {shape!r}, {typecode!r})')
    return multiarray._reconstruct(_CheckedArray, (0,), b'b')


def _scalar(dtype, data=None):
    """Stands in for numpy's ``scalar``: a numeric scalar from exactly ``itemsize`` bytes."""
    dtype = _checked_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        _refuse(f'a numpy {dtype} scalar from {type(data).__name__} data')
    return multiarray.scalar(dtype, data)


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
    """The allow-list (guarded stand-ins named as the globals they replace); see the module."""
    entries = [(_CheckedArray, 'numpy.ndarray'), (_numeric_dtype, 'numpy.dtype'),
               (_history_buffer_getattr, 'builtins.getattr')]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [(_reconstruct, f'{module}._reconstruct'), (_scalar, f'{module}.scalar')]
    for code in ('?', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8', 'c8',
                 'c16'):  # BUILD (dtype.__setstate__) only: a GLOBAL line has no newline
        cls = type(np.dtype(code))
        entries.append((cls, f'{cls.__module__}.{cls.__name__}\n(BUILD only)'))
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        entries.append(HistoryBuffer)
    except ImportError:  # plain torch use without mmengine
        pass
    return entries


_GUARDED = {np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, getattr}


def _bypasses_guards(entry) -> bool:
    """A registration of a raw numpy global (or getattr) under a name a pickle can spell."""
    obj, name = entry if isinstance(entry, tuple) else (entry, '')
    if '\n' in name:  # ours: reachable by BUILD only
        return False
    return obj in _GUARDED or (isinstance(obj, type) and issubclass(obj, np.dtype))


def allow_mmengine_checkpoints() -> None:
    """Install the safe loading layer process-wide (idempotent).

    Adds :func:`mmengine_safe_globals` to ``torch.serialization``'s safe globals (entries
    registered by other code stay as they are) and routes mmengine's ``CheckpointLoader``
    through :func:`safe_load`.
    """
    current = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([g for g in mmengine_safe_globals() if g not in current])
    _route_mmengine_loader()


def _refuse_unguarded_globals(path) -> None:
    """A raw numpy entry (or ``getattr``) that other code added to torch's safe globals would
    let a checkpoint bypass the guards: refuse to load rather than remove someone's setting."""
    raw = [g for g in torch.serialization.get_safe_globals() if _bypasses_guards(g)]
    if raw:
        names = ', '.join(sorted({getattr(g[0] if isinstance(g, tuple) else g, '__name__',
                                          repr(g)) for g in raw}))
        raise UnsafeCheckpointError(
            f'checkpoint {path} not loaded: torch.serialization safe globals hold unguarded '
            f'entries ({names}) added by other code, which let a file build object arrays; '
            'remove them (torch.serialization.clear_safe_globals) before loading')


def _route_mmengine_loader() -> None:
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:
        return
    if getattr(CheckpointLoader.load_checkpoint, '_micronet_safe', False):
        return
    original = CheckpointLoader.load_checkpoint.__func__

    def load_checkpoint(cls, filename, map_location=None, logger='current'):
        if cls._get_checkpoint_loader(filename) is cls._schemes.get(''):  # a local file
            return safe_load(filename, map_location=map_location)
        return as_plain_data(original(cls, filename, map_location, logger), str(filename))

    load_checkpoint._micronet_safe = True
    CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)


def _describe(error: BaseException) -> str:
    """The informative line of a (long, multi-paragraph) torch loading error."""
    text = str(error)
    if text.startswith('Weights only load failed'):  # header, the reason, a documentation link
        tail = text.split('WeightsUnpickler error:', 1)[1] if 'WeightsUnpickler error:' in text \
            else text.split('\n\n', 1)[-1]
        text = tail.split('Check the documentation')[0].split(' Please use `torch.serialization')[0]
    first = next((line.strip() for line in text.splitlines() if line.strip()), '')
    return f'{type(error).__name__}: {first[:200]}' if first else type(error).__name__


def safe_load(path: str | os.PathLike, map_location=None):
    """Load a checkpoint file as plain data; the one loader of this project.

    Args:
        path: the checkpoint file.
        map_location: as for ``torch.load``.

    Returns:
        The checkpoint (usually a dict with ``state_dict`` and ``meta``), numpy arrays as plain
        ``np.ndarray``, stored config text removed.

    Raises:
        CheckpointError: the file is missing, empty, truncated or not a PyTorch checkpoint.
        UnsafeCheckpointError: it holds anything but plain data (pickled code, object,
            structured or void numpy arrays, ...).
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {path} is an empty file; download or save it again')
    with open(path, 'rb') as f:
        legacy = f.read(1) == b'\x80'  # a pickle (protocol >= 2): torch's format before 1.6
    if not legacy and not zipfile.is_zipfile(path):
        raise CheckpointError(f'cannot read checkpoint {path}: truncated, corrupt or not a '
                              'PyTorch file (neither a zip archive nor a pickle); download or '
                              'save it again')
    try:
        check_checkpoint_file(path, legacy)  # sizes and pickle work, before torch reads it
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, UserError):
            raise
        raise CheckpointError(f'cannot read checkpoint {path}: truncated, corrupt or not a '
                              f'PyTorch file ({_describe(e)}); download or save it again') from None
    allow_mmengine_checkpoints()
    _refuse_unguarded_globals(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f'checkpoint {path} refused: it holds more than plain data ({_describe(e)}). '
            'Only tensors, numbers, strings, containers and numeric numpy arrays load; '
            'do not use this file') from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, zipfile.BadZipFile, MemoryError, RecursionError) as e:
        raise CheckpointError(
            f'cannot read checkpoint {path}: truncated, corrupt or not a PyTorch file '
            f'({_describe(e)}); download or save it again') from None
    return as_plain_data(obj, path)


def as_plain_data(obj, source: str):
    """What an unpickler with these stand-ins returned, as plain data: ``np.ndarray`` for every
    :class:`_CheckedArray`, non-numeric dtypes refused, stored config text replaced or
    removed; ``obj`` is changed in place where it is mutable.

    Raises:
        UnsafeCheckpointError: naming ``source``.
    """
    try:
        obj = _plain(obj, {})
    except RecursionError:
        raise UnsafeCheckpointError(f'checkpoint {source} refused: nested too deeply') from None
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(f'checkpoint {source} refused: {e}') from None
    if isinstance(obj, dict):
        hub = obj.get('message_hub')
        places = (('meta', obj.get('meta')),
                  ("message_hub['runtime_info']",
                   hub.get('runtime_info') if isinstance(hub, dict) else None))
        for where, place in places:
            if isinstance(place, dict):
                for key in STORED_CONFIG_KEYS:
                    if key in place:
                        _replace_config_text(place, key, source, where)
    return obj


#: modules a stored config may name in ``custom_imports``: importing runs their code, so only
#: micronet_mm's models (which register MicroNet in the toolboxes) and modules already imported
#: (importing those again runs nothing) are accepted
CONFIG_IMPORTS = ('micronet_mm.models',)
CONFIG_IMPORT_ROOTS = ('micronet_mm', 'mmpretrain', 'mmdet', 'mmseg', 'mmpose', 'mmengine', 'mmcv')
_CONFIG_CALLS = {'dict': dict, 'list': list, 'tuple': tuple, 'set': set}


def config_text_as_data(text: str) -> dict:
    """The assignments of a stored config text, read as literals: nothing in it runs.

    mmengine stores ``cfg.pretty_text``: ``name = <literal>`` lines of numbers, strings,
    ``dict(...)``, lists and tuples. Anything else (an import, a call, a name, ``_base_``
    files, ``custom_imports`` other than :data:`CONFIG_IMPORTS` or modules of
    :data:`CONFIG_IMPORT_ROOTS` already imported) raises ``ValueError``.
    """
    data = {}
    for node in ast.parse(text).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f'line {node.lineno} is not a plain assignment')
        data[node.targets[0].id] = _literal(node.value)
    if '_base_' in data:
        raise ValueError('it names _base_ files')
    custom = data.get('custom_imports')
    if custom is not None:
        imports = custom.get('imports') if isinstance(custom, dict) else custom
        names = [imports] if isinstance(imports, str) else imports
        if not isinstance(names, (list, tuple)) or not all(
                isinstance(n, str) and n.split('.')[0] in CONFIG_IMPORT_ROOTS
                and (n in CONFIG_IMPORTS or n in sys.modules) for n in names):
            raise ValueError(f'custom_imports names {imports!r}')
    return data


def _literal(node):
    if isinstance(node, ast.Constant) and not isinstance(node.value, type(...)):
        if isinstance(node.value, float) and not np.isfinite(node.value):
            raise ValueError(f'line {node.lineno}: non-finite number')
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) in (int, float, complex):
        return -_literal(node.operand) if isinstance(node.op, ast.USub) else _literal(node.operand)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _CONFIG_CALLS and all(k.arg for k in node.keywords)):
        return _CONFIG_CALLS[node.func.id](*[_literal(a) for a in node.args],
                                           **{k.arg: _literal(k.value) for k in node.keywords})
    raise ValueError(f'line {getattr(node, "lineno", "?")}: {type(node).__name__} is not a '
                     'literal')


def _replace_config_text(place: dict, key: str, source: str, where: str) -> None:
    """Replace stored config text by literal-only text made from :func:`config_text_as_data`
    (what mmengine then executes, when an inferencer builds from it, is data), or drop it.
    A config that names an unregistered type or scope is refused
    (:func:`micronet_mm.stored_config.check_stored_config`).

    Raises:
        UnsafeCheckpointError: naming ``source``, the place and the key path.
    """
    from mmengine.logging import print_log
    try:
        data = config_text_as_data(place[key])
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as e:
        del place[key]
        print_log(f'checkpoint {source}: the config stored in it ({key}) is not plain data '
                  f'({e}); ignored', logger='current', level=30)
        return
    custom = data.get('custom_imports')
    imports = custom.get('imports') if isinstance(custom, dict) else custom
    for name in [imports] if isinstance(imports, str) else imports or ():
        if name in CONFIG_IMPORTS:  # micronet_mm's models: their types become registered
            importlib.import_module(name)
    try:
        data = check_stored_config(data, f"its stored config ({where}['{key}'])")
    except StoredConfigError as e:
        raise UnsafeCheckpointError(f'checkpoint {source} refused: {e}') from None
    place[key] = ''.join(f'{name} = {value!r}\n' for name, value in data.items())


def _plain(obj, seen: dict):
    if isinstance(obj, (str, bytes, int, float, complex, bool, type(None), torch.Tensor)):
        return obj
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, np.ndarray):
        _checked_dtype(obj.dtype)
        result = obj.view(np.ndarray) if type(obj) is not np.ndarray else obj
    elif isinstance(obj, np.dtype):
        _checked_dtype(obj)
        result = obj
    elif isinstance(obj, np.generic):
        _checked_dtype(obj.dtype)
        result = obj
    elif isinstance(obj, tuple):
        result = type(obj)(*[_plain(v, seen) for v in obj]) if hasattr(obj, '_fields') \
            else type(obj)(_plain(v, seen) for v in obj)
    else:
        seen[id(obj)] = obj  # before descending: lists and dicts may contain themselves
        if isinstance(obj, list):
            obj[:] = [_plain(v, seen) for v in obj]
        elif isinstance(obj, dict):
            for key in list(obj):
                obj[key] = _plain(obj[key], seen)
        elif isinstance(obj, (set, frozenset)):
            for value in obj:  # hashable members: numbers, strings, tuples, dtypes (checked)
                _plain(value, seen)
        elif hasattr(obj, '__dict__'):  # mmengine's HistoryBuffer
            for key, value in list(vars(obj).items()):
                vars(obj)[key] = _plain(value, seen)
        return obj
    seen[id(obj)] = result
    return result


# ---------------------------------------------------------------- strict loading for inference

def state_dict_of(checkpoint) -> OrderedDict:
    """The weights of a loaded checkpoint (``state_dict``, or the file itself when it is one),
    with DataParallel's ``module.`` prefix removed (as mmengine's loader does)."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError('no state_dict of tensors in the checkpoint')
    return OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state.items())


def compare_weights(model: torch.nn.Module, state: Mapping) -> dict[str, list[str]]:
    """Keys of ``model`` absent from ``state``, keys of ``state`` the model lacks, and keys whose
    shapes differ (``name: checkpoint shape vs model shape``)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [f'{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in own.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return {'missing': missing, 'unexpected': unexpected, 'mis-shaped': mis_shaped}


def check_weights(model: torch.nn.Module, checkpoint, *, source: str,
                  strict: bool = True) -> dict[str, list[str]]:
    """The strict-loading rule for inference and export.

    Every weight of the model decides its output, so a checkpoint must provide all of them
    with the model's shapes: any missing or mis-shaped key refuses (``num_batches_tracked``
    aside). Keys the model does not have are only reported (a warning).

    Args:
        model: the built model (unwrapped).
        checkpoint: a loaded checkpoint, or its path.
        source: the file name for the messages.
        strict: ``False`` turns the refusal into a warning.

    Raises:
        CheckpointMismatchError: naming the counts and the first keys of each kind.
    """
    from mmengine.logging import print_log
    if not isinstance(checkpoint, Mapping):
        checkpoint = safe_load(checkpoint, map_location='cpu')
    try:
        diff = compare_weights(model, state_dict_of(checkpoint))
    except CheckpointError as e:
        raise CheckpointError(f'checkpoint {source}: {e}') from None
    total = len(model.state_dict())
    parts = [f'{len(v)} {kind} ({", ".join(v[:3])}{", ..." if len(v) > 3 else ""})'
             for kind, v in diff.items() if v]
    if not parts:
        return diff
    message = (f'checkpoint {source} does not fit the model ({total} weights): '
               + '; '.join(parts))
    if strict and (diff['missing'] or diff['mis-shaped']):
        raise CheckpointMismatchError(
            message + '. It was trained for another architecture or head: use the config it '
            'was trained with')
    print_log(message, logger='current', level=30)  # logging.WARNING
    return diff


def load_weights(model: torch.nn.Module, checkpoint_path: str, *, strict: bool = True) -> dict:
    """:func:`safe_load` + :func:`check_weights` + ``load_state_dict``; returns the checkpoint."""
    checkpoint = safe_load(checkpoint_path, map_location='cpu')
    check_weights(model, checkpoint, source=checkpoint_path, strict=strict)
    model.load_state_dict(state_dict_of(checkpoint), strict=False)
    return checkpoint

"""Run a function right after a module is first imported; the wheel's startup hook uses it.

An installed wheel puts ``micronet_mm-startup.pth`` into site-packages (see setup.py). Python
runs its one line, ``micronet_mm_startup.install()``, at every interpreter start. It imports
nothing but the standard library and only registers :func:`_import_micronet_mm` to run after
``mmengine.runner.checkpoint`` is imported. A process that never loads an mmengine checkpoint
pays one dictionary look-up per import.

Why: a toolbox inferencer given only a checkpoint (``DetInferencer(weights=CKPT)`` reads the
config from the checkpoint) loads it before any config could ``custom_imports`` micronet_mm,
and torch's ``weights_only`` loading refuses mmengine's ``HistoryBuffer``. ``import
micronet_mm`` allow-lists exactly the types mmengine writes (micronet_mm/checkpoint.py);
nothing else is allowed, so a hostile checkpoint is still refused. If that import fails, the
hook warns once and the user's import goes on unchanged.

This module is top level, not inside ``micronet_mm``, because importing the package imports
torch, which a startup hook must not do.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable

_CALLBACKS: dict[str, list[Callable[[], None]]] = {}


class _RunAfterExec(importlib.abc.Loader):
    """Wraps a module's loader: executes the module, then the callbacks waiting for it."""

    def __init__(self, loader: importlib.abc.Loader, callbacks: list) -> None:
        self._loader, self._callbacks = loader, callbacks

    def __getattr__(self, name: str):  # get_resource_reader, is_package, ... of the real one
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        for callback in self._callbacks:
            _run(callback)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched name it asks the other finders and wraps the loader."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in _CALLBACKS:
            return None
        callbacks = _CALLBACKS.pop(fullname)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = _RunAfterExec(spec.loader, callbacks)
                return spec
        return None


_FINDER = _PostImportFinder()


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception as e:  # a startup hook must never break the user's import
        warnings.warn(f'micronet_mm startup hook {callback.__name__} failed: {e!r}',
                      stacklevel=3)


def when_imported(module: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once ``module`` has been imported (now, if it already is)."""
    if module in sys.modules:
        _run(callback)
        return
    _CALLBACKS.setdefault(module, []).append(callback)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def _import_micronet_mm() -> None:
    import micronet_mm  # noqa: F401  (allow-lists mmengine's checkpoint types)


def install() -> None:
    """What the startup ``.pth`` runs: import micronet_mm once mmengine loads checkpoints."""
    when_imported('mmengine.runner.checkpoint', _import_micronet_mm)

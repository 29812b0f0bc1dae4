"""Run a function right after a module is first imported (standard library only).

:func:`when_imported` puts a finder at the front of ``sys.meta_path`` that finds nothing itself:
for a watched module name it asks the other finders and wraps the loader, so that the
callbacks run once the module has executed. Used by ``import micronet_mm`` (to list the
classification configs in mmpretrain's ``ModelHub`` once ``mmpretrain.apis`` is imported) and by
the wheel's start-up hook (``micronet_mm_startup.py``). It is a top-level module, not part of
the package, because the start-up hook must not import the package (and with it torch).
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
    except Exception as e:  # an import hook must never break the user's import
        warnings.warn(f'micronet_mm import hook {callback.__name__} failed: {e!r}',
                      stacklevel=3)


def when_imported(module: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once ``module`` has been imported (now, if it already is). A
    callback already waiting for ``module`` is not added twice."""
    if module in sys.modules:
        _run(callback)
        return
    waiting = _CALLBACKS.setdefault(module, [])
    if callback not in waiting:
        waiting.append(callback)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)

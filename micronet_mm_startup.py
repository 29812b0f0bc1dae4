"""The wheel's start-up hook: import micronet_mm once mmengine's checkpoint module is imported.

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
torch, which a startup hook must not do. The post-import machinery is
``micronet_mm_post_import.py``.
"""
from __future__ import annotations

from micronet_mm_post_import import when_imported


def _import_micronet_mm() -> None:
    import micronet_mm  # noqa: F401  (allow-lists mmengine's checkpoint types)


def install() -> None:
    """What the startup ``.pth`` runs: import micronet_mm once mmengine loads checkpoints."""
    when_imported('mmengine.runner.checkpoint', _import_micronet_mm)

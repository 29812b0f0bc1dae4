"""Register one implementation in the model registry of every OpenMMLab toolbox that uses it."""
from __future__ import annotations

import importlib

#: toolboxes whose ``<name>.registry.MODELS`` receives the shared modules
TOOLBOXES = ('mmpretrain', 'mmdet', 'mmpose', 'mmseg')


def register_in(toolboxes: tuple[str, ...], module: type) -> type:
    """Register ``module`` under its class name in each toolbox's ``MODELS`` registry."""
    for name in toolboxes:
        registry = importlib.import_module(f'{name}.registry').MODELS
        registry.register_module(module=module, force=True)
    return module

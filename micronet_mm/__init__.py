"""MicroNet for OpenMMLab.

Importing the package allow-lists the types that mmengine checkpoints contain, so that
``load_from``, ``resume`` and ``tools/test.py`` work under torch's ``weights_only`` loading.
Models register themselves in the toolboxes on ``import micronet_mm.models``.
"""
from .checkpoint import allow_mmengine_checkpoints

__version__ = '0.1.0'

allow_mmengine_checkpoints()


def _register_model_zoo() -> None:
    """List our classification configs in mmpretrain's ``ModelHub`` once it is imported."""
    from micronet_mm_startup import when_imported

    from .zoo import register_with_mmpretrain
    when_imported('mmpretrain.apis.model', register_with_mmpretrain)


_register_model_zoo()

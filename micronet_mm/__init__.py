"""MicroNet for OpenMMLab.

Importing the package allow-lists the types that mmengine checkpoints contain, so that
``load_from``, ``resume`` and ``tools/test.py`` work under torch's ``weights_only`` loading.
Models register themselves in the toolboxes on ``import micronet_mm.models``. The
classification configs are listed in mmpretrain's ``ModelHub`` as soon as ``mmpretrain.apis``
is imported (micronet_mm/zoo.py), so ``mmpretrain.get_model('micronet-m0_8xb64_in1k')`` works.
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

"""The model zoo: ``model-index.yml`` and the per-task ``configs/*/metafile.yml`` (OpenMMLab's
format), and their registration with mmpretrain's ``ModelHub``.

``import micronet_mm`` arranges :func:`register_with_mmpretrain` to run as soon as
``mmpretrain.apis.model`` is imported (at once if it already is), so that afterwards
``mmpretrain.list_models('*micronet*')`` lists our classification configs and
``mmpretrain.get_model('micronet-m0_8xb64_in1k')`` builds one. Only the classification
metafile is registered: ``get_model`` builds in mmpretrain's registry, which has no detectors,
segmentors or pose estimators. The other tasks' metafiles are in the model index for
``mim``-style tools and for people.
"""
from __future__ import annotations

import os.path as osp

PACKAGE = osp.dirname(osp.abspath(__file__))
MMPRETRAIN_METAFILE = osp.join('configs', 'pretrain', 'metafile.yml')
_registered = False


def zoo_root() -> str:
    """The folder holding ``model-index.yml`` and ``configs/``: ``micronet_mm/.mim`` in a wheel,
    the repository root in a checkout (editable install)."""
    for root in (osp.join(PACKAGE, '.mim'), osp.dirname(PACKAGE)):
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return root
    raise FileNotFoundError(f'no model-index.yml in {PACKAGE}/.mim or beside {PACKAGE}; '
                            'reinstall micronet_mm (pip install .)')


def register_with_mmpretrain() -> None:
    """Register the classification metafile with ``mmpretrain.apis.ModelHub`` (idempotent)."""
    global _registered
    if _registered:  # ModelHub refuses a second registration of a name
        return
    from mmpretrain.apis.model import ModelHub
    root = zoo_root()
    ModelHub.register_model_index(osp.join(root, MMPRETRAIN_METAFILE), config_prefix=root)
    _registered = True

"""The normalization layer of every operator, built from an mmcv ``norm_cfg``.

``norm_cfg=None`` (every operator's default) is ``dict(type='BN')``: a ``BatchNorm2d``, the layer
the reference code uses, so the parameter names of a model built with the default are those of
the released checkpoints. ``dict(type='SyncBN')`` gives ``torch.nn.SyncBatchNorm`` for training on
several GPUs (mmengine's runner, or :func:`mmengine.model.revert_sync_batchnorm`, turns it back
into a plain BatchNorm in a single process). Other mmcv norm types (``'GN'``, ...) build and train;
deploy mode folds BatchNorm only (:func:`micronet_mm.deploy.convert_backbone` says so).
"""
from __future__ import annotations

from mmcv.cnn import build_norm_layer
from torch import nn

#: what ``norm_cfg=None`` stands for
DEFAULT_NORM_CFG = dict(type='BN')


def norm_layer(norm_cfg: dict | None, channels: int) -> nn.Module:
    """The normalization of ``channels`` channels that ``norm_cfg`` describes (``None``: BN)."""
    return build_norm_layer(dict(DEFAULT_NORM_CFG if norm_cfg is None else norm_cfg),
                            channels)[1]

"""The entry points: :func:`switch_to_deploy` for any model, :func:`convert_backbone` for a
backbone (or any module holding MicroNet parts)."""
from __future__ import annotations

import torch
from torch import nn

from micronet_mm.models.heads.cls_head import MicroNetClsHead

from .backends import BACKENDS, DEFAULT, HEAD_PROGRAMS, check_backend
from .common import check_foldable_norms
from .rewrites.cls_head import convert_cls_head


def convert_backbone(backbone: nn.Module, backend: str = DEFAULT) -> nn.Module:
    """Rewrite a MicroNet backbone (or any module holding MicroNet parts) in place.

    Args:
        backbone: the trained module; put in eval mode.
        backend: a key of :data:`BACKENDS`: ``'pytorch'`` (the default: standard operators
            only, per layer, grouped 1x1 convolutions as batched matmuls; any exporter takes
            it), ``'native'`` (the stem and stages as native ``micronet::program`` calls where
            the operators are built: fastest in eager PyTorch, exports custom nodes),
            ``'onnxruntime'`` (standard operators, per layer, grouped ``Conv``; what
            ``tools/deployment/export_onnx.py --deploy`` exports) or ``'openvino'``
            (``--backend openvino``: the stages as native OpenVINO nodes).

    Returns:
        ``backbone``, converted, with no parameter requiring gradients.
    """
    check_backend(backend)
    check_foldable_norms(backbone)
    backbone.eval()
    with torch.no_grad():
        BACKENDS[backend](backbone)
    for p in backbone.parameters():
        p.requires_grad_(False)
    return backbone


def switch_to_deploy(model: nn.Module, backend: str = DEFAULT) -> nn.Module:
    """Rewrite every MicroNet part of ``model`` (backbone, classifier head, or a whole
    classifier / detector / segmentor / pose model) into its deploy form, in place.

    The result is for inference only (eval mode, no gradients); outputs equal the original's up
    to float rounding.

    Args:
        model: the trained model, weights loaded.
        backend: a key of :data:`BACKENDS`, see :func:`convert_backbone`.

    Returns:
        ``model``, converted.
    """
    check_backend(backend)
    check_foldable_norms(model)
    model.eval()
    heads = [m for m in model.modules() if isinstance(m, MicroNetClsHead)]
    for head in heads:
        convert_cls_head(head, programs=HEAD_PROGRAMS[backend]())
    convert_backbone(model, backend)
    if hasattr(model, 'deploy'):
        model.deploy = True
    return model

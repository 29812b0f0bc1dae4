"""The classifier head (:class:`MicroNetClsHead`) in deploy form."""
from __future__ import annotations

import torch
from torch import nn

from ..common import fold_bn


def convert_cls_head(head: nn.Module) -> nn.Module:
    """Fold :class:`MicroNetClsHead`'s BatchNorm1d layers into its FC layers, drop the dropout."""
    head.eval()
    with torch.no_grad():
        for fc_name, bn_name in (('fc1', 'bn1'), ('fc2', 'bn2')):
            fc, bn = getattr(head, fc_name), getattr(head, bn_name)
            weight, bias = fold_bn(fc.weight, fc.bias, bn)
            fused = nn.Linear(fc.in_features, fc.out_features, device=weight.device,
                              dtype=weight.dtype)
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
            setattr(head, fc_name, fused)
            setattr(head, bn_name, nn.Identity())
        head.dropout = nn.Identity()
    for p in head.parameters():
        p.requires_grad_(False)
    return head



"""Mutual learning with a full-rank partner (arXiv v1 §5.1).

A full-rank partner shares MicroNet's widths and depths but uses ordinary pointwise and kxk
depthwise convolutions in place of the Micro-Factorized ones (``MicroNet(full_rank=True)``). Both
networks train together (deep mutual learning): each minimises its cross entropy plus
``kl_weight · T² · KL(softmax(z_other / T) || softmax(z_self / T))``, the other's prediction
taken as a fixed target. Only the MicroNet is used for inference and evaluation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS

from ..auto_channels import fill_auto_channels, with_auto_channels

#: ``ImageClassifier`` with ``head.in_channels='auto'`` taken from the backbone
MicroNetImageClassifier = with_auto_channels(ImageClassifier, 'head')


def kl_to_target(logits: torch.Tensor, target_logits: torch.Tensor, t: float) -> torch.Tensor:
    """``T² · KL(softmax(target/T) || softmax(logits/T))``, mean over the batch."""
    log_p = F.log_softmax(logits / t, dim=1)
    q = F.softmax(target_logits.detach() / t, dim=1)
    return F.kl_div(log_p, q, reduction='batchmean') * t * t


class MutualLearningClassifier(MicroNetImageClassifier):
    """``MicroNetImageClassifier`` that co-trains a full-rank partner.

    Args:
        backbone: MicroNet backbone config.
        head: head config, shared in shape by both networks.
        partner_backbone: partner backbone config; default: ``backbone`` with
            ``full_rank=True``.
        kl_weight: weight of each KL term.
        temperature: softmax temperature T of the KL terms.
        **kwargs: the rest of ``ImageClassifier``'s arguments.
    """

    def __init__(self, backbone: dict, head: dict, *, partner_backbone: dict | None = None,
                 kl_weight: float = 1.0, temperature: float = 1.0, **kwargs) -> None:
        super().__init__(backbone=backbone, head=head, **kwargs)
        if partner_backbone is None:
            partner_backbone = dict(backbone, full_rank=True)
        self.partner_backbone = MODELS.build(partner_backbone)
        self.partner_head = MODELS.build(fill_auto_channels(head, partner_backbone))
        self.kl_weight, self.temperature = kl_weight, temperature

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        logits = self.head(self.extract_feat(inputs))
        partner_logits = self.partner_head(self.partner_backbone(inputs))
        losses = self.head._get_loss(logits, data_samples)
        losses['partner_loss'] = self.partner_head._get_loss(partner_logits, data_samples)['loss']
        t = self.temperature
        losses['kl_loss'] = self.kl_weight * kl_to_target(logits, partner_logits, t)
        losses['partner_kl_loss'] = self.kl_weight * kl_to_target(partner_logits, logits, t)
        return losses

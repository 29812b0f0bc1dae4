"""The reference MicroNet classifier head, as an mmpretrain ``ClsHead``."""
from __future__ import annotations

import torch
from mmpretrain.models.heads import ClsHead
from torch import nn

from micronet_mm.ops import norm_layer
from micronet_mm.ops.shift_max import HSwish


class MicroNetClsHead(ClsHead):
    """ReLU6 -> global average pool -> h-swish -> FC-BN-h-swish -> dropout -> FC-BN-h-swish.

    This is the reference code's classifier (``avgpool`` + ``classifier``): two fully connected
    layers, each followed by BatchNorm1d and h-swish, the logits included.

    Args:
        num_classes: number of classes.
        in_channels: channels of the backbone's last stage.
        mid_channels: width of the first FC layer (640 / 960 / 1024 / 1024 for M0-M3).
        dropout: dropout rate between the two FC layers.
        norm_cfg: mmcv config of the two normalization layers; ``'BN'`` (the default) is a
            BatchNorm1d, as the reference code; ``'SyncBN'`` works on the (N, C) features as is.
        **kwargs: ``loss``, ``topk``, ``cal_acc``, ``init_cfg`` of ``ClsHead``.
    """

    def __init__(self, num_classes: int, in_channels: int, mid_channels: int,
                 dropout: float = 0.0, norm_cfg: dict = dict(type='BN'), **kwargs) -> None:
        kwargs.setdefault('init_cfg', [dict(type='Normal', layer='Linear', std=0.01, bias=0),
                                       dict(type='Constant', layer='_BatchNorm', val=1, bias=0)])
        super().__init__(**kwargs)
        self.num_classes, self.in_channels = num_classes, in_channels
        self.pool = nn.Sequential(nn.ReLU6(), nn.AdaptiveAvgPool2d(1), HSwish())
        self.fc1 = nn.Linear(in_channels, mid_channels)
        norm_cfg = dict(norm_cfg, type='BN1d') if norm_cfg['type'] == 'BN' else norm_cfg
        self.bn1 = norm_layer(norm_cfg, mid_channels)
        self.act1 = HSwish()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(mid_channels, num_classes)
        self.bn2 = norm_layer(norm_cfg, num_classes)
        self.act2 = HSwish()

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.pool(feats[-1]).flatten(1)  # (N, C)
        return self.act1(self.bn1(self.fc1(x)))  # (N, mid)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.dropout(self.pre_logits(feats))
        return self.act2(self.bn2(self.fc2(x)))  # (N, num_classes)


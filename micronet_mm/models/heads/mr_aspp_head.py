"""MR-ASPP: the Micro-Reduced ASPP segmentation head of MicroNet (arXiv v1 2011.12289, §6.2).

The paper describes it in one sentence: LR-ASPP (MobileNetV3, Howard et al. 2019) "that
bilinearly upsamples the feature map by 2, applies spatial attention, and merges with the feature
map from the backbone at stride of 8", made lighter "by using Micro-Factorized convolutions to
replace convolution". No code was released; this is our reading:

    x16 (stride 16) -> Micro-Factorized 1x1 (C16 -> channels), ReLU  ─┐
    x16 -> global average pool -> 1x1 conv (C16 -> channels), sigmoid ─┴─ product
        -> bilinear x2 (to the stride-8 size)
        -> spatial attention of dynamic ReLU: x · min(HW · softmax(BN(conv1x1(x))), 3) / 3
        -> concatenate with Micro-Factorized 1x1 (C8 -> skip_channels), ReLU, of x8 (stride 8)
        -> Micro-Factorized 1x1 (channels + skip_channels -> channels), ReLU
        -> dropout, 1x1 classifier (``conv_seg``)

Each part the sentence leaves open, and why we chose it:

* The pooled sigmoid gate stays. It is LR-ASPP's own second branch, global average pooling that
  MobileNetV3 likens to a Squeeze-and-Excitation module: a gate per channel, not a spatial
  attention. The paper says it follows LR-ASPP and names one change to it, the convolutions.
* "Applies spatial attention" names a step that LR-ASPP does not have, after the upsampling and
  before the merge, in that order. The one spatial attention the same paper uses elsewhere is
  the one of dynamic ReLU (its ref. [6], "per layer" in the pose head, §6.1), so we apply that
  one (:class:`SpatialAttention`, the DY-ReLU authors' code), on the upsampled map. An earlier
  version used ``sigmoid(conv1x1(x))``, which neither paper describes.
* ReLU, not Dynamic Shift-Max: LR-ASPP's branch is conv-BN-ReLU, and the paper replaces the
  convolutions only ("lighter"); the pose head, by contrast, is described as Micro-Blocks, which
  carry Dynamic Shift-Max. A Micro-Factorized pointwise convolution (``P Φ Q^T``) already links
  every input channel to every output, so no Shift-Max is needed to connect its groups.

Differences from mmseg's ``LRASPPHead``: the image-pooling branch is a global average pool, so any
input size works (mmseg hard-codes a 49x49 window with stride (16, 20), which needs stride-16 maps
of at least 49x49, i.e. inputs of at least 784 px); one skip connection (stride 8), as the paper;
Micro-Factorized pointwise convolutions (``W = P Φ Q^T``, micronet_mm/ops/pointwise.py) instead of
dense 1x1 convolutions. The pooled gate stays a dense 1x1 convolution with a bias and no BN: it
runs on a 1x1 map, where BN would fail for a batch of one and where its cost is negligible.
"""
from __future__ import annotations

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from torch import nn

from micronet_mm.ops import MicroFactorizedPointwise, SpatialAttention, adaptive_groups


def _mf_pointwise_relu(in_channels: int, out_channels: int, reduction: float,
                       norm_cfg: dict) -> nn.Sequential:
    """Micro-Factorized pointwise convolution (BN after each factor), then ReLU.

    The hidden width is ``min(C_in, C_out) / R``; both factors use G groups, G the integer
    closest to ``sqrt(C/R)`` (Eq. 3) that divides C_in and C_out, and the hidden width is
    rounded to a multiple of G.
    """
    hidden = min(in_channels, out_channels) / reduction
    groups = adaptive_groups(round(hidden), 1, divides=(in_channels, out_channels))
    hidden = max(groups, round(hidden / groups) * groups)
    return nn.Sequential(
        MicroFactorizedPointwise(in_channels, out_channels, hidden, groups=(groups, groups),
                                 norm_cfg=norm_cfg),
        nn.ReLU(inplace=True))


class MRASPPHead(BaseDecodeHead):
    """Micro-Reduced ASPP head (see the module docstring for the layers).

    Args:
        in_channels: ``[C8, C16]``, the channels of the stride-8 and stride-16 backbone outputs
            (configs give ``'auto'``; ``MicroNetEncoderDecoder`` fills it from the backbone).
        channels: width of the head (``channels`` of mmseg's ``BaseDecodeHead``).
        skip_channels: width the stride-8 feature is projected to before the merge.
        reduction: R of the Micro-Factorized pointwise convolutions: their hidden width is
            ``min(C_in, C_out) / R``; groups follow Eq. 3 (``G = sqrt(C/R)``).
        norm_cfg: mmcv config of every normalization layer of the head (BN by default;
            ``dict(type='SyncBN')`` for several GPUs). The pointwise factors need one.
        **kwargs: the rest of ``BaseDecodeHead`` (``num_classes``, ``in_index``, ``dropout_ratio``,
            ``loss_decode``, ``align_corners``, ...). ``input_transform`` is always
            ``'multiple_select'``.
    """

    def __init__(self, in_channels: list[int], channels: int, *, skip_channels: int = 32,
                 reduction: float = 4.0, norm_cfg: dict = dict(type='BN'), **kwargs) -> None:
        if isinstance(in_channels, int) or len(in_channels) != 2:
            raise ValueError('MRASPPHead: in_channels must be [C_stride8, C_stride16], got '
                             f'{in_channels!r}; the backbone needs out_indices=(1, 3)')
        kwargs.setdefault('in_index', (0, 1))
        if norm_cfg is None:
            raise ValueError('MRASPPHead: norm_cfg=None is not allowed: the Micro-Factorized '
                             "convolutions need a norm layer; give e.g. dict(type='BN')")
        kwargs['input_transform'] = 'multiple_select'
        super().__init__(in_channels, channels, norm_cfg=norm_cfg, **kwargs)
        c8, c16 = self.in_channels
        self.aspp = _mf_pointwise_relu(c16, channels, reduction, self.norm_cfg)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c16, channels, 1),
                                  nn.Sigmoid())
        # dynamic ReLU's, on the upsampled map
        self.spatial = SpatialAttention(channels, norm_cfg=self.norm_cfg)
        self.skip = _mf_pointwise_relu(c8, skip_channels, reduction, self.norm_cfg)
        self.fuse = _mf_pointwise_relu(channels + skip_channels, channels, reduction,
                                       self.norm_cfg)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x8, x16 = self._transform_inputs(inputs)  # (N, C8, H/8, W/8), (N, C16, H/16, W/16)
        x = self.aspp(x16) * self.gate(x16)  # (N, channels, H/16, W/16)
        x = resize(x, size=x8.shape[2:], mode='bilinear', align_corners=self.align_corners)
        x = self.spatial(x)  # (N, channels, H/8, W/8), spatially attended
        x = self.fuse(torch.cat([x, self.skip(x8)], dim=1))  # (N, channels, H/8, W/8)
        return self.cls_seg(x)  # (N, num_classes, H/8, W/8)

"""The Micro-Block pose head of arXiv v1 §6.1 / appendix §8.1 (Table 10, "head").

Three Micro-Blocks on the stride-16 backbone output, in the code's view of a block (expand ->
depthwise -> compress): a Micro-Block-C at stride 16 (the depthwise and compression of the
paper's first head row, whose expansion is the backbone's last), bilinear x2 upsampling, a
Micro-Block-C at stride 8, bilinear x2 upsampling, then the expansion and a Micro-Block-A whose
depthwise convolution does not expand, at stride 4. Each upsampling thus comes AFTER a block's
compression, on the narrowest tensor (in the paper's view: between a row's compression and the
next row's expansion). Every activation slot is followed by the spatial attention of dynamic
ReLU. A pointwise convolution gives the K heatmaps (64x48 for a 256x192 input). The rows are
data: ``POSE_HEAD_SETTINGS``.

Loss, flip test, decoding and prediction are mmpose's :class:`HeatmapHead` ones (this class only
replaces its layers), so codecs such as ``MSRAHeatmap`` and ``TopdownPoseEstimator`` apply as is.
"""
from __future__ import annotations

import dataclasses

import torch
from mmpose.models.heads import HeatmapHead
from mmpose.models.heads.base_head import BaseHead
from mmpose.registry import KEYPOINT_CODECS, MODELS
from torch import nn

from micronet_mm.models.backbones.micronet_archs import ARCH_SETTINGS, POSE_HEAD_SETTINGS
from micronet_mm.ops import BLOCKS, BlockSpec


class BilinearUpsample(nn.Module):
    """x2 bilinear upsampling (counted as 0 MAdds, as in the papers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2, mode='bilinear',
                                         align_corners=False)  # (N, C, 2H, 2W)


def build_head_layers(arch: str, in_channels: int, act_cfg: dict | None = None,
                      norm_cfg: dict | None = None) -> tuple[nn.Sequential, int]:
    """The head's blocks for ``arch`` (a key of ``POSE_HEAD_SETTINGS``) and their output width.

    The activations are those of the backbone table of the same name, with spatial attention;
    ``norm_cfg`` is the mmcv config of every normalization layer (``None``: BatchNorm2d).
    """
    if arch not in POSE_HEAD_SETTINGS:
        raise ValueError(f'MicroPoseHead: arch={arch!r} is not allowed; legal values: '
                         f'{list(POSE_HEAD_SETTINGS)}')
    act = dataclasses.replace(ARCH_SETTINGS[arch]['act'], spatial_attention=True,
                              **(act_cfg or {}))
    layers, channels = [], in_channels
    for row in POSE_HEAD_SETTINGS[arch]:
        if row[0] == 'U':
            layers.append(BilinearUpsample())
            continue
        spec = BlockSpec(*row)
        layers.append(BLOCKS[spec.block](channels, spec, act, norm_cfg=norm_cfg))
        channels = (channels * spec.expand[0] * spec.expand[1] if spec.block == 'E'
                    else spec.out_channels)
    return nn.Sequential(*layers), channels


class MicroPoseHead(HeatmapHead):
    """Micro-Block heatmap head (arXiv v1 Table 10) with mmpose's heatmap-head contract.

    Args:
        in_channels: width of the backbone output (``'auto'`` in configs, filled by
            ``MicroNetTopdownPoseEstimator`` from the backbone).
        out_channels: number of keypoints K (17 for COCO).
        arch: key of ``POSE_HEAD_SETTINGS`` (``'pose-m0'`` .. ``'pose-m3'``).
        act_cfg: overrides of the activation settings (``ActSettings`` fields).
        norm_cfg: mmcv config of every normalization layer (``dict(type='SyncBN')`` for
            several GPUs).
        loss: keypoint loss config (mmpose's ``KeypointMSELoss`` by default).
        decoder: codec config used to decode heatmaps (e.g. ``MSRAHeatmap``).
        init_cfg: mmengine initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int = 17, *, arch: str = 'pose-m0',
                 act_cfg: dict | None = None, norm_cfg: dict = dict(type='BN'),
                 loss: dict = dict(type='KeypointMSELoss', use_target_weight=True),
                 decoder: dict | None = None, init_cfg: dict | list | None = None) -> None:
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f'MicroPoseHead: in_channels must be a positive int (one feature '
                             f'map, stride 16), got {in_channels!r}')
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d', mode='fan_out',
                             nonlinearity='relu', distribution='normal'),
                        dict(type='Constant', layer='_BatchNorm', val=1, bias=0),
                        dict(type='Normal', layer='Linear', std=0.01, bias=0),
                        # heatmap layer as mmpose's HeatmapHead: outputs start near 0
                        dict(type='Normal', std=0.001, bias=0, override=dict(name='final_layer'))]
        # HeatmapHead's own layers (deconvolutions) are not used: build the base head only and
        # reuse HeatmapHead's loss / predict (flip test) / decode.
        BaseHead.__init__(self, init_cfg)
        self.in_channels, self.out_channels, self.arch = in_channels, out_channels, arch
        self.loss_module = MODELS.build(loss)
        self.decoder = KEYPOINT_CODECS.build(decoder) if decoder is not None else None
        self.layers, channels = build_head_layers(arch, in_channels, act_cfg, norm_cfg)
        self.final_layer = nn.Conv2d(channels, out_channels, 1)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.layers(feats[-1])  # (N, C_last, 4·H16, 4·W16): stride 4
        return self.final_layer(x)  # (N, K, H/4, W/4)

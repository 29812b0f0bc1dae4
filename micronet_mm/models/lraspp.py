"""The benchmark's segmentation baseline: LR-ASPP on MobileNetV3-Small as the MobileNetV3 paper
builds it for Cityscapes (its segmentation table: reduced last block, output stride 16, a head of
128 filters; 2.90 G MAdds at 1024x2048, 68.4 mIoU, the baseline of the MicroNet paper's
Table 9). Not a MicroNet part: ``tools/analysis/baselines/`` holds its config, and
docs/benchmark.md how its count compares with the paper's.

mmseg ships LR-ASPP on MobileNetV3-Small only at output stride 8 with a head that goes up to 1/2
resolution (8.45 G MAdds at 512x1024), so two parts differ from mmseg's:

* :class:`PaperMobileNetV3`: mmseg's ``MobileNetV3`` (arch ``small``) with the paper's
  segmentation changes: output stride 16 (only the last stage's stride-2 depthwise convolution
  becomes stride 1, that stage dilated by 2), and the last stage's outputs and the final 1x1
  convolution halved (96 -> 48, 576 -> 288; the expansions keep six times their input, as the
  paper's ``reduce the channels of the last block by 2``);
* :class:`PaperLRASPPHead`: the paper's head: on the 1/16 features a 1x1 convolution to 128
  channels (BN, ReLU) gated by a sigmoid of a 1x1 convolution of their large-kernel average
  pooling (49x49, stride 16x20), upsampled to 1/8 and classified by a 1x1 convolution, plus a
  1x1 convolution of the 1/8 features to the classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import Conv2dAdaptivePadding
from mmseg.models.backbones import MobileNetV3
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import nn

#: MobileNetV3-Small's blocks (kernel, expansion, outputs, SE, activation, stride), mmseg's
#: layout, with the last stage reduced as the paper's segmentation model
SMALL_REDUCED = [row[:] for row in MobileNetV3.arch_settings['small'][:8]] + [
    [5, 288, 48, True, 'HSwish', 2],
    [5, 288, 48, True, 'HSwish', 1],
    [5, 288, 48, True, 'HSwish', 1]]
FINAL_CHANNELS = 288


class PaperMobileNetV3(MobileNetV3):
    """MobileNetV3-Small at output stride 16 with the reduced last stage (module docstring).

    Args:
        **kwargs: mmseg ``MobileNetV3`` arguments (``arch`` must be ``'small'``,
            ``reduction_factor`` 1: the reduction is built in).
    """

    arch_settings = {'small': SMALL_REDUCED}

    def __init__(self, **kwargs) -> None:
        if kwargs.get('arch', 'small') != 'small' or kwargs.get('reduction_factor', 1) != 1:
            raise ValueError('PaperMobileNetV3 is MobileNetV3-Small with its own reduction')
        super().__init__(**kwargs)
        last = self.layers[-1]
        old = getattr(self, last)
        setattr(self, last, ConvModule(old.conv.in_channels, FINAL_CHANNELS, 1,
                                       conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                                       act_cfg=dict(type='HSwish')))
        # mmseg made it output stride 8 (layer4 and layer9 stride 1, dilations 2 and 4):
        # output stride 16 keeps layer4's stride and dilates the last stage (layers 9-11) by 2
        for i, name in enumerate(self.layers[4:-1], start=4):
            conv = getattr(self, name).depthwise_conv.conv
            dilation = 2 if i >= 9 else 1
            conv.stride = (2, 2) if i == 4 else (1, 1)
            conv.dilation = (dilation, dilation)
            if not isinstance(conv, Conv2dAdaptivePadding):
                pad = dilation * (conv.kernel_size[0] - 1) // 2
                conv.padding = (pad, pad)


class PaperLRASPPHead(BaseDecodeHead):
    """The MobileNetV3 paper's Lite R-ASPP head (module docstring).

    Args:
        in_channels: ``(low, high)``: the 1/8 and the 1/16 features' channels.
        pool_kernel: the gate's average pooling kernel (clipped to the feature map).
        pool_stride: its stride.
        **kwargs: ``BaseDecodeHead`` arguments (``channels``: the head's filters;
            ``input_transform='multiple_select'``).
    """

    def __init__(self, pool_kernel: int = 49, pool_stride: tuple[int, int] = (16, 20),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if self.input_transform != 'multiple_select' or len(self.in_channels) != 2:
            raise ValueError("PaperLRASPPHead takes two inputs (1/8, 1/16) with "
                             "input_transform='multiple_select'")
        low, high = self.in_channels
        self.pool_kernel, self.pool_stride = pool_kernel, tuple(pool_stride)
        self.aspp_conv = ConvModule(high, self.channels, 1, norm_cfg=self.norm_cfg,
                                    act_cfg=self.act_cfg, bias=False)
        self.gate_conv = ConvModule(high, self.channels, 1, act_cfg=dict(type='Sigmoid'),
                                    bias=False)
        self.low_cls = nn.Conv2d(low, self.out_channels, 1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        low, high = self._transform_inputs(inputs)
        h, w = high.shape[2:]
        # the pooling kernel is a Python int even when traced (an export holds the one of its
        # input size: the paper's head pools a fixed window, sized for 1024x2048 inputs)
        kernel = (min(self.pool_kernel, int(h)), min(self.pool_kernel, int(w)))
        pooled = F.avg_pool2d(high, kernel, self.pool_stride)
        gate = F.interpolate(self.gate_conv(pooled), size=(h, w), mode='bilinear',
                             align_corners=False)
        x = F.interpolate(self.aspp_conv(high) * gate, size=low.shape[2:], mode='bilinear',
                          align_corners=self.align_corners)
        return self.cls_seg(x) + self.low_cls(low)

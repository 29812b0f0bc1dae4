# Example: MicroNet in a config of your own (README "Using the backbone").
#
# It inherits mmdet's stock RetinaNet-R50 config and swaps only the backbone and the FPN inputs,
# as a project outside this repository would. Everything else (data, schedule, head) is
# mmdet's; tests/test_zoo.py builds it and trains one step. For the paper's recipe use
# retinanet_micronet_m3.py instead.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

# 1. 'micronet_mm.models' registers MicroNet in mmdet's registry ('micronet_mm' alone does not).
custom_imports = dict(imports=['micronet_mm.models'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,  # 2. replace ResNet's dict; without it depth, style, ... merge in
        type='MicroNet',
        arch='m3',
        out_indices=(1, 2, 3),  # strides 8, 16, 32
        frozen_stages=-1,
        norm_eval=True,
        # an ImageNet checkpoint converted by tools/model_converters/ (README: Model zoo and weights)
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/micronet-m3_in1k.pth',
                      prefix='backbone.')),
    # 3. the widths of those stages: MicroNet(arch='m3').out_channels for out_indices (1, 2, 3).
    # Plain RetinaNet does not fill in_channels='auto' (type='MicroNetRetinaNet' would), and
    # ResNet's FPN skips its first input (start_level=1); here all three are used.
    neck=dict(in_channels=[24, 80, 864], start_level=0))

# Faster R-CNN + FPN with a MicroNet-M2 backbone on COCO, 3x schedule (ICCV Table 8: 22.7 mAP).
# Everything as faster-rcnn_micronet_m3_fpn.py but the backbone and its checkpoint.
_base_ = './faster-rcnn_micronet_m3_fpn.py'

pretrained = 'checkpoints/micronet-m2_in1k.pth'
model = dict(
    backbone=dict(
        arch='m2',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

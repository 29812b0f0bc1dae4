# RetinaNet with a MicroNet-M2 backbone on COCO, 3x schedule (ICCV paper Table 8: 22.6 mAP).
# Everything as retinanet_micronet_m3.py but the backbone and its checkpoint.
_base_ = './retinanet_micronet_m3.py'

pretrained = 'checkpoints/micronet-m2_in1k.pth'
model = dict(
    backbone=dict(
        arch='m2',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

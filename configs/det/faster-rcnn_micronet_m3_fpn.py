# Faster R-CNN + FPN with a MicroNet-M3 backbone on COCO, 3x schedule (ICCV Table 8: 26.2 mAP).
#
# Backbone weights: `pretrained` below is the one place to set the converted ImageNet checkpoint
# (tools/model_converters/micronet_official_to_mmpretrain.py). COCO is expected in data/coco/.
#
# Choices the paper leaves open, and why:
# - FPN on all four stages, strides 4/8/16/32 (out_indices=(0, 1, 2, 3)), P2-P6 with max-pool
#   P6, width 256, standard RPN and 2-FC box head: mmdet's Faster R-CNN-R50-FPN with only the
#   backbone changed.
# - norm_eval=True (ImageNet BN statistics; 2 images per GPU are too few), frozen_stages=-1.
# - norm_cfg SyncBN, as mmdet's multi-GPU configs: BN layers share their batch statistics over
#   all GPUs (16 images instead of 2). With norm_eval=True the statistics stay frozen anyway;
#   SyncBN matters once norm_eval is switched off. A single process (tools/train.py, CPU) runs
#   it as plain BN (mmengine's runner reverts it).
# - SGD lr 0.02 at total batch 16, momentum 0.9, weight decay 1e-4, 500 warmup iterations:
#   mmdet's Faster R-CNN recipe (auto_scale_lr base 16).
# - 3x schedule as the paper: 36 epochs, lr x0.1 at epochs 28 and 34, mmdet's 3x multi-scale
#   training (shorter side 640-800).
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py', './_base_/coco_ms-3x-36e.py']
custom_imports = dict(imports=['micronet_mm.models'], allow_failed_imports=False)

pretrained = 'checkpoints/micronet-m3_in1k.pth'
model = dict(
    type='MicroNetFasterRCNN',
    backbone=dict(
        _delete_=True,
        type='MicroNet',
        arch='m3',
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels='auto'))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))

# RetinaNet with a MicroNet-M3 backbone on COCO, 3x schedule (ICCV paper Table 8: 25.4 mAP).
#
# Backbone weights: an ImageNet checkpoint converted with
#   tools/model_converters/micronet_official_to_mmpretrain.py micronet-m3.pth checkpoints/micronet-m3_in1k.pth
# The path is set in ONE place, `pretrained` below (override: --cfg-options
# model.backbone.init_cfg.checkpoint=/path/to.pth). COCO is expected in data/coco/ (override:
# --cfg-options train_dataloader.dataset.data_root=... etc., see README).
#
# Choices the paper leaves open, and why:
# - FPN on the stride 8/16/32 stages (out_indices=(1, 2, 3)), P3-P7 with two extra stride-2
#   convs on the last input ('on_input'), as mmdet's RetinaNet-R50; FPN width 256 and the
#   standard 4-conv RetinaNet head, so that only the backbone differs from the mmdet baseline.
# - norm_eval=True: BN statistics stay those of ImageNet. With 2 images per GPU, batch
#   statistics are too noisy (mmdet does the same for every ImageNet-pretrained backbone); the
#   BN scales and shifts still train. frozen_stages=-1: the paper fine-tunes the whole backbone.
# - norm_cfg SyncBN, as mmdet's multi-GPU configs: BN layers share their batch statistics over
#   all GPUs (16 images instead of 2). With norm_eval=True the statistics stay frozen anyway;
#   SyncBN matters once norm_eval is switched off. A single process (tools/train.py, CPU) runs
#   it as plain BN (mmengine's runner reverts it).
# - SGD lr 0.01 at total batch 16 (8 GPUs x 2), momentum 0.9, weight decay 1e-4, 500 warmup
#   iterations: mmdet's RetinaNet recipe (auto_scale_lr base 16).
# - 3x schedule as the paper: 36 epochs (no RepeatDataset), lr x0.1 at epochs 28 and 34, with
#   mmdet's 3x multi-scale training (shorter side 640-800, longer side up to 1333).
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', './_base_/coco_ms-3x-36e.py']
custom_imports = dict(imports=['micronet_mm.models'], allow_failed_imports=False)

pretrained = 'checkpoints/micronet-m3_in1k.pth'
model = dict(
    type='MicroNetRetinaNet',
    backbone=dict(
        _delete_=True,
        type='MicroNet',
        arch='m3',
        out_indices=(1, 2, 3),  # strides 8, 16, 32
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels='auto', start_level=0, add_extra_convs='on_input', num_outs=5))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))

# MicroNet (arXiv v1) + MR-ASPP on Cityscapes, trained from scratch (arXiv v1 §6.2).
# The four model configs only choose the backbone and the head width.
_base_ = [
    'mmseg::_base_/datasets/cityscapes.py',  # CityscapesDataset, IoUMetric, test at 1024x2048
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['micronet_mm.models'], allow_failed_imports=False)

# SyncBN in the backbone and the head, as mmseg's multi-GPU configs: with 4 images per GPU the
# BN statistics are those of the whole batch of 16. A single process (tools/train.py, CPU) runs
# it as plain BN (mmengine's runner reverts it).
norm_cfg = dict(type='SyncBN', requires_grad=True)

# Crop size: not given by the paper; 512x1024 as mmseg's LR-ASPP (MobileNetV3) recipe.
crop_size = (512, 1024)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    type='MicroNetEncoderDecoder',  # fills decode_head.in_channels='auto' from the backbone
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MicroNet',
        arch='v1-m0',
        out_indices=(1, 3),  # stride-8 feature for the merge, last stage for the ASPP
        output_stride=16,  # "blocks with stride of 32 run at stride of 16" (v1 §6.2)
        norm_cfg=norm_cfg,
    ),
    decode_head=dict(
        type='MRASPPHead',
        in_channels='auto',
        channels=256,  # head width: not in the paper, chosen to meet its MAdds (see docs/architecture.md)
        skip_channels=64,
        reduction=3,
        norm_cfg=norm_cfg,
        dropout_ratio=0.1,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    # Whole-image inference at 1024x2048, as the paper's MAdds; mode='slide' also works.
    test_cfg=dict(mode='whole'))

# DeepLabV3-style augmentation (random scale 0.5-2.0, crop, flip) comes from the mmseg base;
# PhotoMetricDistortion is part of it as in every mmseg Cityscapes recipe.
# 4 GPUs x 4 images = batch 16 (mmseg's LR-ASPP batch).
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader

# The paper's recipe: cosine decay to 1e-4, weight decay 4e-5. Not given by the paper: the
# initial learning rate (0.02 for batch 16, from scratch), the length (320k iterations = 1720
# epochs of the 2975 train images, mmseg's from-scratch LR-ASPP length) and a 1k-iteration
# linear warm-up that keeps Dynamic Shift-Max stable in the first steps from scratch.
max_iters = 320000
optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=4e-5)
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=False, begin=1000, end=max_iters,
         T_max=max_iters - 1000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=32000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=32000))
# the lr above is for 16 images per iteration; --auto-scale-lr rescales it
auto_scale_lr = dict(enable=False, base_batch_size=16)

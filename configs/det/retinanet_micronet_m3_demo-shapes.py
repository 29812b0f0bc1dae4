# Demo: retinanet_micronet_m3.py on the embedded demo detection data (COCO format, 3 classes of
# filled shapes in 128x128 images, made by tools/data/make_demo_data.py). It changes the data,
# the image scale and what a tiny dataset on 2 CPU cores requires:
# - no ImageNet checkpoint (none ships with the repo): the backbone starts from scratch, so its
#   BN statistics train too (norm_eval=False), with plain BN (one process);
# - batch 4 (960 iterations in all), a 100-iteration warmup instead of 500, and gradient
#   clipping at norm 10;
# - 16 epochs with the 3x schedule's shape (lr x0.1 at epochs 12 and 15 of 16);
# - a narrower FPN and head (64 channels, 2 stacked head convs instead of 256 and 4): at 256 the
#   FPN and head took ~85% of the demo's time (8-9 min on 2 cores). Measured on the held-out
#   split: bbox mAP@0.5 0.86 at 64/2 (about 2.5 min, one thread), 0.66 at 256/4.
# tools/test.py evaluates bbox mAP with mmdet's CocoMetric.
_base_ = './retinanet_micronet_m3.py'

data_root = 'data/demo_det/'
metainfo = dict(classes=('square', 'circle', 'triangle'),
                palette=[(220, 20, 60), (0, 128, 255), (0, 200, 0)])
img_scale = (128, 128)

model = dict(
    backbone=dict(norm_cfg=dict(type='BN'), norm_eval=False, init_cfg=None),
    neck=dict(out_channels=64),
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, stacked_convs=2))
# from scratch, the loss spikes without clipping (seen: a collapse back to the initial loss)
optim_wrapper = dict(clip_grad=dict(max_norm=10, norm_type=2))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(128, 104), (128, 128)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=2,
    batch_sampler=None,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True,
                                                                 min_size=8),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=16, val_interval=16)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=16, by_epoch=True, milestones=[12, 15], gamma=0.1),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=4, max_keep_ckpts=2, save_last=True))
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU-only multi-process runs
randomness = dict(seed=0)

# Demo: MicroNet pose-M0 on the embedded demo keypoint data (synthetic stick figures with the 17
# COCO keypoints, made by micronet_mm/datasets/demo_pose.py into data/demo_pose on first use).
# 300 iterations of batch 8: about a minute on 2 idle CPU cores (0.2 s per iteration; 12 minutes
# when we shared them with other jobs). tools/test.py then reports COCO
# AP (CocoMetric, ground-truth boxes) on the held-out split: we saw AP 0.27 (AP@0.5 0.77)
# against about 0 for an untrained model. Input 64x48 (heatmaps 16x12) to keep it fast; the model
# is the one of the COCO config.
_base_ = './td-hm_micronet-pose-m0_8xb64-250e_coco-256x192.py'

data_root = 'data/demo_pose/'
codec = dict(type='MSRAHeatmap', input_size=(48, 64), heatmap_size=(12, 16), sigma=2)
model = dict(head=dict(decoder=codec))

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', rotate_factor=20.0, scale_factor=(0.85, 1.15)),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, ann_file='annotations/train.json',
                 data_prefix=dict(img='images/train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=48, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, ann_file='annotations/val.json', bbox_file=None,
                 data_prefix=dict(img='images/val/'), pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='Adam', lr=5e-3))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=5, start_factor=0.1, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=10, milestones=[8], gamma=0.2, by_epoch=True),
]
auto_scale_lr = dict(base_batch_size=8)
train_cfg = dict(max_epochs=10, val_interval=100)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=1, save_last=True,
                    save_best=None))
randomness = dict(seed=0)

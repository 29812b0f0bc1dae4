# Demo: MicroNet-M0 on the embedded demo-shapes data (4 classes of 64x64 images, made by
# tools/data/make_demo_data.py). Trains on 2 CPU cores in about a minute; tools/test.py then
# reports top-1 on the held-out split (chance: 25%).
_base_ = './micronet-m0_8xb64_in1k.py'

data_root = 'data/demo_shapes'
model = dict(head=dict(num_classes=4, topk=(1, )))
data_preprocessor = dict(num_classes=4)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=2, persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train', ann_file='',
                 with_label=True, pipeline=train_pipeline, _delete_=True))
val_dataloader = dict(
    batch_size=64, num_workers=2, persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val', ann_file='',
                 with_label=True, pipeline=test_pipeline, _delete_=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=29, by_epoch=True, begin=1, end=30, eta_min=0.0,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=30, val_interval=10)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=1, save_last=True))
randomness = dict(seed=0)

# COCO detection data and the paper's 3x schedule, shared by the MicroNet detectors:
# mmdet's multi-scale 3x pipeline (shorter side 640-800), but 36 real epochs (no
# RepeatDataset) with lr x0.1 at epochs 28 and 34, 500 linear warmup iterations,
# validation every 3 epochs.
_base_ = 'mmdet::common/ms_3x_coco.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root='data/coco/',
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline={{_base_.train_pipeline}}))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=36, val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[28, 34], gamma=0.1),
]
auto_scale_lr = dict(base_batch_size=16)  # 8 GPUs x 2 images

# MicroNet-M0 on ImageNet-1k with the official recipe (ICCV paper §6.1 and the reference
# training scripts): SGD momentum 0.9, lr 0.2 at total batch 512 (8 GPUs x 64), 5 warmup epochs
# then cosine decay over 600 epochs, no label smoothing, random resized crop + flip at 224,
# weight decay 3e-5 (M0-M2) / 4e-5 (M3), dropout 0.05 (M0-M1) / 0.1 (M2-M3).
# The reference scripts ran M0-M2 at batch 256 / lr 0.1 and M3 at 512 / 0.2: the same linear
# rule, which auto_scale_lr applies for other batch sizes (tools/train.py --auto-scale-lr).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_pil_resize.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['micronet_mm.models'], allow_failed_imports=False)

model = dict(
    type='MicroNetImageClassifier',
    backbone=dict(type='MicroNet', arch='m0'),
    head=dict(
        type='MicroNetClsHead',
        num_classes=1000,
        in_channels='auto',  # from the backbone (micronet_mm/models/auto_channels.py)
        mid_channels=640,
        dropout=0.05,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.2, momentum=0.9, weight_decay=3e-5, nesterov=False))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=595, by_epoch=True, begin=5, end=600, eta_min=0.0,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=600, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=512)

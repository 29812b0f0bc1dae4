# MicroNet-M3 on ImageNet-1k; recipe as M0 but weight decay 4e-5 and dropout 0.1.
_base_ = './micronet-m0_8xb64_in1k.py'

model = dict(
    backbone=dict(arch='m3'),
    head=dict(mid_channels=1024, dropout=0.1))
optim_wrapper = dict(optimizer=dict(weight_decay=4e-5))

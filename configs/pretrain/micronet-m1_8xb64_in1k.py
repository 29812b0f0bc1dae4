# MicroNet-M1 on ImageNet-1k; recipe as M0 (see micronet-m0_8xb64_in1k.py).
_base_ = './micronet-m0_8xb64_in1k.py'

model = dict(
    backbone=dict(arch='m1'),
    head=dict(mid_channels=960, dropout=0.05))

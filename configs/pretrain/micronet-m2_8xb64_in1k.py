# MicroNet-M2 on ImageNet-1k; recipe as M0 but dropout 0.1 (see micronet-m0_8xb64_in1k.py).
_base_ = './micronet-m0_8xb64_in1k.py'

model = dict(
    backbone=dict(arch='m2'),
    head=dict(mid_channels=1024, dropout=0.1))

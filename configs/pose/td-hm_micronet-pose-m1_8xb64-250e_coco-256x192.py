# MicroNet pose-M1 (arXiv v1 Table 8): same recipe as pose-M0 (see that config).
_base_ = './td-hm_micronet-pose-m0_8xb64-250e_coco-256x192.py'

arch = 'pose-m1'
model = dict(backbone=dict(arch=arch), head=dict(arch=arch))

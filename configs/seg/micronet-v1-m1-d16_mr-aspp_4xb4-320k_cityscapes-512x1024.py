# MicroNet-M1 of arXiv v1 (Table 1) at output stride 16 + MR-ASPP, Cityscapes, from scratch.
# Paper (v1 Table 9): 1.20B MAdds at 1024x2048, 0.99M params, 63.5 mIoU (val).
_base_ = ['./_base_/micronet-v1_mr-aspp_cityscapes.py']
model = dict(backbone=dict(arch='v1-m1'))

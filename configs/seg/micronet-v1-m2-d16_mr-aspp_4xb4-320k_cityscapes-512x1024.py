# MicroNet-M2 of arXiv v1 (Table 1) at output stride 16 + MR-ASPP, Cityscapes, from scratch.
# Paper (v1 Table 9): 1.75B MAdds at 1024x2048, 1.85M params, 66.1 mIoU (val).
_base_ = ['./_base_/micronet-v1_mr-aspp_cityscapes.py']
model = dict(backbone=dict(arch='v1-m2'))

# MicroNet-M0 of arXiv v1 (Table 1) at output stride 16 + MR-ASPP, Cityscapes, from scratch.
# Paper (v1 Table 9): 0.81B MAdds at 1024x2048, 0.43M params, 56.9 mIoU (val).
_base_ = ['./_base_/micronet-v1_mr-aspp_cityscapes.py']
model = dict(backbone=dict(arch='v1-m0'))

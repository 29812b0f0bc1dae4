# LR-ASPP on MobileNetV3-Small at the MobileNetV3 paper's Cityscapes setting (the baseline of
# the MicroNet paper's Table 9: 2.90 G MAdds at 1024x2048, 68.4 mIoU): mmseg's LR-ASPP
# MobileNetV3-Small config with
# - the backbone at output stride 16 (mmseg's is 8) and its last stage reduced by 2
#   (96 -> 48 outputs, final 1x1 576 -> 288): micronet_mm.models.lraspp.PaperMobileNetV3;
# - the paper's head (128 filters on the 1/16 features, gated by their large-kernel average
#   pooling, classified at 1/8 plus a 1x1 classifier of the 1/8 features): PaperLRASPPHead
#   (mmseg's head goes up to 1/2 resolution).
# tools/analysis/benchmark.py times it as the segmentation baseline ('seg-lraspp');
# docs/benchmark.md compares its MAdds with the paper's.
_base_ = 'mmseg::mobilenet_v3/mobilenet-v3-d8-scratch-s_lraspp_4xb4-320k_cityscapes-512x1024.py'
custom_imports = dict(imports=['micronet_mm.models'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='PaperMobileNetV3', out_indices=(3, 12)),  # 1/8 (24) and 1/16 (288)
    decode_head=dict(type='PaperLRASPPHead', in_channels=(24, 288), in_index=(0, 1)))

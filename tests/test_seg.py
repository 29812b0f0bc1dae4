"""Segmentation: the arXiv v1 MicroNets, the MR-ASPP head, the Cityscapes configs, the demo data,
a short real training and the segmentation API / demo script."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn

from conftest import ROOT
from micronet_mm.analysis import count_complexity
from micronet_mm.models import ARCH_SETTINGS, MicroNet, MicroNetClsHead

V1_ARCHS = ['v1-m0', 'v1-m1', 'v1-m2', 'v1-m3']
SEG_DIR = osp.join(ROOT, 'configs', 'seg')
CITYSCAPES = {a: osp.join(SEG_DIR, f'micronet-{a}-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py')
              for a in V1_ARCHS}
DEMO_CFG = osp.join(SEG_DIR, 'micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-cityscapes-128x256.py')
ALL_SEG_CONFIGS = sorted(glob.glob(osp.join(SEG_DIR, '*.py')))

# arXiv v1 Table 1 budgets at 224x224, classifier (2 FC layers, width `mid`) included.
V1_PAPER = {'v1-m0': dict(madds=6e6, params=1.8e6, mid=960),
            'v1-m1': dict(madds=12e6, params=2.4e6, mid=1024),
            'v1-m2': dict(madds=21e6, params=3.3e6, mid=1024),
            'v1-m3': dict(madds=44e6, params=4.5e6, mid=1024)}
# arXiv v1 Table 9: MAdds at 1024x2048 of backbone + MR-ASPP
SEG_PAPER_MADDS = {'v1-m0': 0.81e9, 'v1-m1': 1.20e9, 'v1-m2': 1.75e9, 'v1-m3': 2.52e9}


def build_seg(cfg_path, **overrides):
    import micronet_mm.models  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict(overrides)
    init_default_scope('mmseg')
    return MODELS.build(cfg.model).eval()


# ------------------------------------------------------------------ v1 backbones, ImageNet size

def v1_complexity(arch):
    from conftest import mmpretrain_scope
    backbone = MicroNet(arch)
    with mmpretrain_scope():
        head = MicroNetClsHead(1000, backbone.stage_channels[-1], V1_PAPER[arch]['mid'])
    return count_complexity(nn.Sequential(backbone, head), (3, 224, 224))


def test_v1_m0_m1_are_the_official_m1_m2_tables():
    """Every number v1 Table 1 prints for v1 M0 / M1 equals the official M1 / M2 config."""
    assert ARCH_SETTINGS['v1-m0'] is ARCH_SETTINGS['m1']
    assert ARCH_SETTINGS['v1-m1'] is ARCH_SETTINGS['m2']


@pytest.mark.parametrize('arch', V1_ARCHS)
def test_v1_params_match_paper_within_3_percent(arch):
    c = v1_complexity(arch)
    assert c.params == pytest.approx(V1_PAPER[arch]['params'], rel=0.03)


@pytest.mark.parametrize('arch', ['v1-m0', 'v1-m2', 'v1-m3'])
def test_v1_madds_match_paper_within_3_percent(arch):
    """v1 M1 is left out: it is the official M2 (12.74M, #2's count), printed "12M" (+6.2%)."""
    assert v1_complexity(arch).madds == pytest.approx(V1_PAPER[arch]['madds'], rel=0.03)


# Exact counts of the reconstructions (224x224, classifier included); docs/architecture.md,
# "The arXiv v1 models".
V1_EXACT = {'v1-m2': dict(params=3_288_744, madds=21_254_688),
            'v1-m3': dict(params=4_603_896, madds=43_328_592)}


@pytest.mark.parametrize('arch', sorted(V1_EXACT))
def test_v1_reconstruction_exact_counts(arch):
    c = v1_complexity(arch)
    assert dict(params=c.params, madds=c.madds) == V1_EXACT[arch]


@pytest.mark.parametrize('arch', sorted(V1_EXACT))
def test_v1_reconstruction_follows_the_one_documented_rule(arch):
    """Both v1-only tables: K=2 only after the depthwise in every B/C/E row, squeeze ratio
    r=1 up to output stride 16 and r=2 at stride 32 (micronet_archs.py)."""
    stride = 2  # after the stem
    for kind, _, s, *_, dsm, r in ARCH_SETTINGS[arch]['rows']:
        stride *= s
        if kind != 'A':
            assert dsm == (1, 2, 1)
        assert r == (1 if stride <= 16 else 2)


def test_v1_m3_keeps_the_printed_first_row():
    """v1 Table 1 prints "Micro-A 3 64 36 (4, -)" for M3: depthwise to 64, compression to 36."""
    first, second = ARCH_SETTINGS['v1-m3']['rows'][:2]
    stem_out = ARCH_SETTINGS['v1-m3']['stem'][0] * ARCH_SETTINGS['v1-m3']['stem'][1]
    assert stem_out * first[3][0] * first[3][1] == 64
    assert (first[1], first[4], first[6][0]) == (3, 36, 4)
    assert second[5] == (0, 36)


@pytest.mark.parametrize('arch', V1_ARCHS)
def test_v1_stride16_keeps_weights_and_stride8_feature(arch):
    s32 = MicroNet(arch, out_indices=(1, 3))
    s16 = MicroNet(arch, out_indices=(1, 3), output_stride=16)
    assert sum(p.numel() for p in s32.parameters()) == sum(p.numel() for p in s16.parameters())
    x8, x16 = s16(torch.randn(1, 3, 96, 160))
    assert x8.shape[2:] == (12, 20) and x16.shape[2:] == (6, 10)
    assert [x8.shape[1], x16.shape[1]] == s16.out_channels


# ------------------------------------------------------------------ Cityscapes configs

@pytest.mark.parametrize('arch', V1_ARCHS)
def test_cityscapes_config_madds_within_5_percent_of_paper(arch):
    """What tools/analysis/get_flops.py reports for the model at 1024x2048 (the same counting
    hooks, run on the meta device: shapes only, so it takes a second instead of many)."""
    from tools.analysis.get_flops import build_model
    model = build_model(Config.fromfile(CITYSCAPES[arch])).to('meta')
    x = torch.empty(1, 3, 1024, 2048, device='meta')
    c = count_complexity(model, x, forward=lambda t: model(t, mode='tensor'))
    assert c.madds == pytest.approx(SEG_PAPER_MADDS[arch], rel=0.05)


def test_meta_device_count_equals_real_count():
    from tools.analysis.get_flops import build_model
    model = build_model(Config.fromfile(CITYSCAPES['v1-m0']))
    real = count_complexity(model, (3, 128, 256), forward=lambda t: model(t, mode='tensor'))
    model = model.to('meta')
    meta = count_complexity(model, torch.empty(1, 3, 128, 256, device='meta'),
                            forward=lambda t: model(t, mode='tensor'))
    assert (real.params, real.madds) == (meta.params, meta.madds)


@pytest.mark.parametrize('path', ALL_SEG_CONFIGS, ids=osp.basename)
def test_every_seg_config_builds_with_channels_from_backbone(path):
    model = build_seg(path)
    assert type(model).__name__ == 'MicroNetEncoderDecoder'
    assert model.decode_head.in_channels == model.backbone.out_channels
    assert model.backbone.output_stride == 16
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.dataset.type == 'CityscapesDataset'
    assert cfg.val_evaluator.type == 'IoUMetric'


@pytest.mark.parametrize('arch', V1_ARCHS)
def test_cityscapes_recipe(arch):
    cfg = Config.fromfile(CITYSCAPES[arch])
    assert cfg.optim_wrapper.optimizer.weight_decay == 4e-5
    cosine = [s for s in cfg.param_scheduler if s.type == 'CosineAnnealingLR']
    assert len(cosine) == 1 and cosine[0].eta_min == 1e-4
    assert cosine[0].end == cfg.train_cfg.max_iters
    types = [t.type for t in cfg.train_pipeline]
    assert {'RandomResize', 'RandomCrop', 'RandomFlip'} <= set(types)
    assert 'Pretrained' not in str(cfg.model) and not cfg.get('load_from')  # from scratch
    assert cfg.test_pipeline[1].scale == (2048, 1024)


# ------------------------------------------------------------------ shapes

@pytest.mark.parametrize('arch', V1_ARCHS)
def test_seg_output_has_input_size(arch):
    """Any input size, also far below mmseg LR-ASPP's 49x49 pooling window at stride 16."""
    model = build_seg(CITYSCAPES[arch])
    for size in [(333, 517), (17, 23)]:
        meta = dict(img_shape=size, ori_shape=size, pad_shape=size)
        with torch.no_grad():
            logits = model.inference(torch.randn(1, 3, *size), [meta])
        assert logits.shape == (1, 19, *size)
        assert torch.isfinite(logits).all()


def test_slide_inference_has_input_size():
    model = build_seg(CITYSCAPES['v1-m0'], **{
        'model.test_cfg': dict(mode='slide', crop_size=(128, 128), stride=(96, 96))})
    meta = dict(img_shape=(200, 333), ori_shape=(200, 333), pad_shape=(200, 333))
    with torch.no_grad():
        logits = model.inference(torch.randn(1, 3, 200, 333), [meta])
    assert logits.shape == (1, 19, 200, 333)


def test_mr_aspp_applies_dyrelu_spatial_attention_after_the_upsampling():
    """MR-ASPP (§6.2): LR-ASPP's pooled gate at stride 16, then, on the map upsampled to the
    stride-8 size, dynamic ReLU's spatial attention (as the pose head's): every channel at a
    position is scaled by the same factor in [0, 1], whose mean is at most 1/3."""
    from micronet_mm.ops import SpatialAttention
    model = build_seg(CITYSCAPES['v1-m0'])
    head = model.decode_head
    assert isinstance(head.spatial, SpatialAttention) and isinstance(head.gate[-1], nn.Sigmoid)
    seen = {}
    head.spatial.register_forward_hook(lambda m, args, out: seen.update(x=args[0], y=out))
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 96, 160))
        head(feats)
    x, y = seen['x'], seen['y']
    assert x.shape[2:] == feats[0].shape[2:] == (12, 20)  # stride 8
    assert (x.abs().sum(1) > 0).all()  # every position has a non-zero channel
    factor = (x * y).sum(1, keepdim=True) / (x * x).sum(1, keepdim=True)  # (1, 1, H, W)
    assert torch.allclose(y, x * factor, atol=1e-6 * float(y.abs().max()))
    assert 0 <= factor.min() and factor.max() <= 1 + 1e-6 and factor.mean() <= 1 / 3 + 1e-6
    assert factor.std() > 0  # not a constant


def test_head_rejects_a_single_feature_map():
    from micronet_mm.models import MRASPPHead
    with pytest.raises(ValueError, match='C_stride8, C_stride16'):
        MRASPPHead(in_channels=576, channels=64, num_classes=19)


# ------------------------------------------------------------------ demo data and training

@pytest.fixture(scope='session')
def demo_data():
    from micronet_mm.datasets.demo_cityscapes import ensure_demo_cityscapes
    return ensure_demo_cityscapes(osp.join(ROOT, 'data', 'demo_cityscapes'))


def test_demo_data_has_cityscapes_layout_and_train_ids(demo_data):
    from PIL import Image
    imgs = sorted(glob.glob(osp.join(demo_data, 'leftImg8bit/train/*/*_leftImg8bit.png')))
    segs = sorted(glob.glob(osp.join(demo_data, 'gtFine/train/*/*_gtFine_labelTrainIds.png')))
    assert len(imgs) == len(segs) > 0
    labels = np.unique(np.concatenate([np.unique(np.asarray(Image.open(p))) for p in segs]))
    assert set(labels) == {0, 2, 10, 11, 13}  # road, building, sky, person, car


def test_demo_data_never_overwrites_other_data(tmp_path):
    from micronet_mm.datasets.demo_cityscapes import ensure_demo_cityscapes
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not a demo dataset'):
        ensure_demo_cityscapes(str(tmp_path / 'mine'), counts=(1, 1))
    assert (tmp_path / 'mine' / 'keep.txt').read_text() == 'x'


TRAIN_ITERS = 40


@pytest.fixture(scope='session')
def demo_run(demo_data, tmp_path_factory):
    """A short real training through tools/train.py; returns (work dir, checkpoint)."""
    from tools.train import main
    work = tmp_path_factory.mktemp('seg_demo')
    main([DEMO_CFG, '--work-dir', str(work), '--cfg-options',
          f'train_cfg.max_iters={TRAIN_ITERS}', 'train_cfg.val_interval=1000',
          'train_dataloader.batch_size=2',
          f'default_hooks.checkpoint.interval={TRAIN_ITERS}'])
    return work, work / f'iter_{TRAIN_ITERS}.pth'


def test_demo_training_raises_miou_well_above_untrained(demo_run, tmp_path):
    from mmseg.datasets import CityscapesDataset
    from tools.test import main
    work, ckpt = demo_run
    untrained = tmp_path / 'untrained.pth'
    torch.manual_seed(0)
    model = build_seg(DEMO_CFG)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': dict(CityscapesDataset.METAINFO)}}, untrained)
    before = main([DEMO_CFG, str(untrained), '--work-dir', str(tmp_path)])['mIoU']
    after = main([DEMO_CFG, str(ckpt), '--work-dir', str(work)])['mIoU']
    # 40 iterations of 2 images: 65.4 mIoU (the full 80-iteration demo: 71.5); untrained: 0.9
    assert after > 35.0 and after > before + 25.0, (before, after)


# ------------------------------------------------------------------ API and demo script

@pytest.fixture(scope='session')
def trained_model(demo_run):
    from micronet_mm.apis import init_segmentor
    return init_segmentor(DEMO_CFG, str(demo_run[1]))


def test_api_on_a_real_photograph_path_and_array(trained_model, tmp_path):
    from PIL import Image
    from skimage import data

    from micronet_mm.apis import segment
    photo = data.coffee()  # (400, 600, 3) uint8 RGB photograph
    path = tmp_path / 'coffee.png'
    Image.fromarray(photo).save(path)
    from_path = segment(trained_model, str(path))
    from_array = segment(trained_model, photo)
    assert from_path.shape == photo.shape[:2] and from_path.dtype == np.int64
    assert from_path.min() >= 0 and from_path.max() < 19
    np.testing.assert_array_equal(from_path, from_array)


def test_api_sliding_window_on_a_large_photo(demo_run, trained_model):
    from skimage import data

    from micronet_mm.apis import inference_segmentor, segment
    photo = data.astronaut()[:200, :330]  # a photograph larger than the 128x128 window
    slide = inference_segmentor(DEMO_CFG, str(demo_run[1]), photo, slide=(128, 128))
    assert slide.shape == segment(trained_model, photo).shape == (200, 330)


@pytest.mark.parametrize('image', [
    np.full((50, 70), 128, np.uint8),  # grayscale
    np.zeros((50, 70, 1), np.uint8),
    np.dstack([np.full((50, 70, 3), 90, np.uint8), np.full((50, 70), 7, np.uint8)]),  # RGBA
    np.zeros((1, 1, 3), np.uint8),  # a single pixel
    np.random.default_rng(0).random((40, 60, 3)),  # float in [0, 1]
], ids=['gray', 'gray1', 'rgba', '1x1', 'float'])
def test_api_accepts_odd_images(trained_model, image):
    from micronet_mm.apis import segment
    classes = segment(trained_model, image)
    assert classes.shape == image.shape[:2]


def test_api_reads_gray_and_rgba_files(trained_model, tmp_path):
    from PIL import Image

    from micronet_mm.apis import segment
    for mode in ('L', 'RGBA', 'P'):
        path = tmp_path / f'{mode}.png'
        Image.new(mode, (33, 21)).save(path)
        assert segment(trained_model, str(path)).shape == (21, 33)


@pytest.mark.parametrize('image,error,match', [
    ('/no/such/image.png', FileNotFoundError, 'image file not found'),
    (np.zeros((10, 10, 2), np.uint8), ValueError, r'\(H, W, 3\)'),
    (np.zeros((0, 10, 3), np.uint8), ValueError, 'empty'),
    (np.full((4, 4, 3), 1000, np.int32), ValueError, '0..255'),
    (12, TypeError, 'path or a numpy array'),
])
def test_api_bad_images_raise_clear_errors(image, error, match):
    from micronet_mm.apis import load_rgb_image
    with pytest.raises(error, match=match):
        load_rgb_image(image)


def test_api_non_image_file_and_missing_checkpoint(tmp_path):
    from micronet_mm.apis import init_segmentor, load_rgb_image
    bad = tmp_path / 'notes.png'
    bad.write_text('not an image')
    with pytest.raises(ValueError, match='not an image file'):
        load_rgb_image(str(bad))
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        init_segmentor(DEMO_CFG, str(tmp_path / 'missing.pth'))


def test_demo_script_writes_overlay_png(demo_run, tmp_path):
    import importlib.util

    from PIL import Image
    from skimage import data
    photo = data.chelsea()  # (300, 451, 3)
    path = tmp_path / 'cat.png'
    Image.fromarray(photo).save(path)
    spec = importlib.util.spec_from_file_location('seg_demo', osp.join(ROOT, 'demo/seg_demo.py'))
    seg_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seg_demo)
    out = str(tmp_path / 'overlay.png')
    seg_demo.main([str(path), DEMO_CFG, str(demo_run[1]), '--out', out])
    overlay = np.asarray(Image.open(out))
    assert overlay.shape == photo.shape
    assert not np.array_equal(overlay, photo)  # the colours were drawn
    classes = np.asarray(Image.open(str(tmp_path / 'overlay_classes.png')))
    assert classes.shape == photo.shape[:2]

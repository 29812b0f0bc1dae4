"""Every bad input names itself: images, annotation files, class lists, --cfg-options keys, hook
arguments and the segmentation API's inputs; user errors reach the command line as one line and
exit code 2."""
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, assert_one_line_error

CLS_CFG = osp.join(ROOT, 'configs/pretrain/micronet-m0_1xb32_demo-shapes.py')
POSE_CFG = osp.join(ROOT, 'configs/pose/td-hm_micronet-pose-m0_1xb8-10e_demo-pose-64x48.py')
SEG_CFG = osp.join(ROOT, 'configs/seg/micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-cityscapes-'
                   '128x256.py')


def shapes_options(root, workers: int = 0) -> list[str]:
    """--cfg-options for one short epoch on a small demo-shapes copy at ``root``."""
    return [f'train_dataloader.dataset.data_root={root}', 'train_cfg.max_epochs=1',
            'train_dataloader.batch_size=4', f'train_dataloader.num_workers={workers}',
            f'train_dataloader.persistent_workers={workers > 0}']


@pytest.fixture
def small_shapes(tmp_path):
    from micronet_mm.datasets.demo_shapes import ensure_demo_shapes
    return ensure_demo_shapes(str(tmp_path / 'shapes'), per_class=(3, 1), size=32)


@pytest.mark.parametrize('workers', [0, 2])
@pytest.mark.parametrize('damage', ['corrupt', 'empty'])
def test_bad_image_is_named(small_shapes, tmp_path, damage, workers):
    from micronet_mm.tools_common import CorruptImageError
    from tools.train import main
    first_class = sorted(os.listdir(osp.join(small_shapes, 'train')))[0]
    bad = osp.join(small_shapes, 'train', first_class, '0001.png')
    with open(bad, 'wb') as f:
        f.write(b'' if damage == 'empty' else b'\x89PNG not really')
    reason = 'is an empty file' if damage == 'empty' else 'is corrupt or not an image'
    with pytest.raises(CorruptImageError, match=re.escape(f'cannot decode image {bad} ({reason}')):
        main([CLS_CFG, '--work-dir', str(tmp_path / 'work'), '--no-validate', '--cfg-options',
              *shapes_options(small_shapes, workers)])


def test_class_list_that_is_not_text_is_named(small_shapes, tmp_path):
    from micronet_mm.tools_common import InvalidInputError
    from tools.train import main
    classes = tmp_path / 'classes.txt'
    classes.write_bytes(bytes(range(128, 256)))
    with pytest.raises(InvalidInputError, match=re.escape(f'{classes} is not a UTF-8 text file')):
        main([CLS_CFG, '--work-dir', str(tmp_path / 'work'), '--no-validate', '--cfg-options',
              *shapes_options(small_shapes), f'train_dataloader.dataset.classes={classes}'])


def test_annotation_file_that_is_not_json_is_named(tmp_path):
    from micronet_mm.datasets.demo_pose import ensure_demo_pose
    from micronet_mm.tools_common import InvalidInputError
    from tools.train import main
    root = ensure_demo_pose(str(tmp_path / 'pose'))
    ann = tmp_path / 'person_keypoints.json'
    ann.write_text('{"images": [1, 2,')  # cut short
    with pytest.raises(InvalidInputError, match=re.escape(f'{ann} is not JSON')):
        main([POSE_CFG, '--work-dir', str(tmp_path / 'work'), '--no-validate', '--cfg-options',
              f'train_dataloader.dataset.data_root={root}',
              f'train_dataloader.dataset.ann_file={ann}', 'train_cfg.max_epochs=1'])


# ---------------------------------------------------------------------------- --cfg-options keys

@pytest.mark.parametrize('key, missing', [
    ('foo.bar', "'foo'"), ('model.backbon.arch', "'model.backbon'"),
    ('train_dataloader.dataset.pipeline.7.scale', "'train_dataloader.dataset.pipeline.7'"),
    ('foo', 'no such top-level key')])
def test_unknown_cfg_option_key_is_refused(key, missing):
    from micronet_mm.tools_common import InvalidInputError, load_config
    with pytest.raises(InvalidInputError, match=re.escape(f'--cfg-options {key}: ') + '.*'
                       + re.escape(missing)):
        load_config(CLS_CFG, {key: 1})


@pytest.mark.parametrize('key, value', [
    ('model.backbone.arch', 'm1'), ('default_hooks.checkpoint.max_keep_ckpts', 3),
    ('train_dataloader.dataset.pipeline.1.prob', 0.2), ('load_from', 'x.pth'),
    ('randomness.deterministic', True), ('env_cfg.cudnn_benchmark', True),
    ('auto_scale_lr.enable', True)])
def test_legit_cfg_option_keys_are_merged(key, value):
    from micronet_mm.tools_common import load_config
    cfg = load_config(CLS_CFG, {key: value})
    node = cfg
    for part in key.split('.'):
        node = node[int(part)] if part.isdigit() else node[part]
    assert node == value


def test_new_runner_and_cfg_dicts_may_be_created():
    from mmengine.config import Config

    from micronet_mm.tools_common import InvalidInputError, check_option_keys
    cfg = Config(dict(model=dict(type='X')))
    check_option_keys(cfg, {'randomness.seed': 0, 'env_cfg.cudnn_benchmark': True,
                            'model.init_cfg.type': 'Pretrained'})
    with pytest.raises(InvalidInputError, match="no 'randomnes'"):
        check_option_keys(cfg, {'randomnes.seed': 0})


def test_hook_argument_typo_fails_before_training(small_shapes, tmp_path):
    from micronet_mm.tools_common import InvalidInputError
    from tools.train import main
    with pytest.raises(InvalidInputError, match=r"default_hooks\.checkpoint\.max_keep_ckpt: "
                       r"CheckpointHook has no argument 'max_keep_ckpt' \(it takes interval, "):
        main([CLS_CFG, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
              *shapes_options(small_shapes), 'default_hooks.checkpoint.max_keep_ckpt=3'])
    assert not (tmp_path / 'work').exists() or not list((tmp_path / 'work').rglob('*.pth'))


def test_unknown_hook_type_is_named():
    from mmengine.config import Config

    from micronet_mm.tools_common import InvalidInputError, check_hooks
    cfg = Config.fromfile(CLS_CFG)
    cfg.custom_hooks = [dict(type='NoSuchHook')]
    with pytest.raises(InvalidInputError, match=r"custom_hooks\.0\.type: no hook 'NoSuchHook'"):
        check_hooks(cfg)
    cfg.custom_hooks = [dict(type='EMAHook', momentum=0.001)]
    check_hooks(cfg)  # a real hook with real arguments passes


# ---------------------------------------------------------------------------- segmentation API

@pytest.fixture(scope='module')
def seg_model():
    from micronet_mm.apis import init_segmentor
    return init_segmentor(SEG_CFG)


@pytest.mark.parametrize('layout', ['bare', 'no_meta'])
def test_init_segmentor_loads_a_checkpoint_without_meta(tmp_path, seg_model, layout):
    """mmseg's init_model raises a bare KeyError 'meta' here; the weights are loaded and the
    classes come from the config's dataset."""
    import torch
    from mmseg.datasets import CityscapesDataset

    from micronet_mm.apis import init_segmentor
    torch.manual_seed(1)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in seg_model.state_dict().items()}
    torch.save(state if layout == 'bare' else {'state_dict': state}, tmp_path / 'w.pth')
    model = init_segmentor(SEG_CFG, str(tmp_path / 'w.pth'))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.dataset_meta['classes'] == CityscapesDataset.METAINFO['classes']


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path, seg_model):
    from micronet_mm.apis import load_rgb_image, segment
    ramp = (np.arange(64 * 96, dtype=np.int64).reshape(64, 96) * 10).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / 'ramp16.png')
    assert Image.open(tmp_path / 'ramp16.png').mode.startswith('I')
    rgb = load_rgb_image(tmp_path / 'ramp16.png')
    expected = np.round(ramp * (255 / 65535)).astype(np.uint8)
    assert rgb.shape == (64, 96, 3) and np.array_equal(rgb[..., 0], expected)
    assert rgb.min() == 0 and 0 < rgb.max() < 255  # PIL's convert('RGB') clipped all to 255
    assert np.array_equal(segment(seg_model, tmp_path / 'ramp16.png'),
                          segment(seg_model, np.stack([expected] * 3, axis=-1)))


@pytest.mark.parametrize('h, w', [(10000, 10), (10, 10000)])
def test_elongated_images_work(seg_model, h, w):
    from micronet_mm.apis import segment
    rng = np.random.default_rng(0)
    classes = segment(seg_model, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert classes.shape == (h, w)
    assert classes.min() >= 0 and classes.max() < seg_model.decode_head.num_classes


def test_too_large_image_names_the_limit(tmp_path, seg_model):
    from micronet_mm.apis import segment
    from micronet_mm.apis.seg import MAX_PIXELS
    from micronet_mm.errors import InvalidInputError
    with pytest.raises(InvalidInputError, match=f'image array: 100000x1 image is too large .*'
                       f'the limit is {MAX_PIXELS}'):
        segment(seg_model, np.zeros((1, 100000, 3), np.uint8))


def test_truncated_image_names_the_file(tmp_path):
    from micronet_mm.apis import load_rgb_image
    from micronet_mm.errors import InvalidInputError
    path = tmp_path / 'cut.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InvalidInputError, match=re.escape(f'cannot read image file {path}: ')):
        load_rgb_image(path)


# ----------------------------------------------------------------------- one line, exit code 2

def test_error_classes_are_user_errors_and_keep_their_bases():
    from micronet_mm.converters import ConversionError
    from micronet_mm.errors import UserError
    from micronet_mm.tools_common import CorruptImageError, InvalidInputError, MissingInputError
    for cls, base in ((MissingInputError, FileNotFoundError), (CorruptImageError, RuntimeError),
                      (ConversionError, ValueError), (InvalidInputError, ValueError)):
        assert issubclass(cls, UserError) and issubclass(cls, base)


@pytest.mark.parametrize('argv, name', [
    (['tools/train.py', CLS_CFG, '--cfg-options', 'foo.bar=1'], 'foo.bar'),
    (['tools/test.py', CLS_CFG, 'nothing.pth'], 'nothing.pth'),
    (['tools/test.py', CLS_CFG, 'nothing.pth', '--out', 'preds.json'], '--out preds.json'),
    (['tools/analysis/get_flops.py', 'no_such_config.py'], 'no_such_config.py'),
    (['tools/deployment/export_onnx.py', 'no_such_config.py', 'nothing.pth'], 'nothing.pth'),
    (['tools/model_converters/micronet_official_to_mmpretrain.py', 'nothing.pth', 'o.pth'],
     'nothing.pth'),
    (['demo/seg_demo.py', 'no_image.png', SEG_CFG, 'nothing.pth'], 'no_image.png'),
    (['demo/pose_demo.py', 'skimage:no_such_photo', POSE_CFG], 'no_such_photo'),
])
def test_main_block_turns_user_error_into_one_line_exit_2(argv, name, tmp_path, monkeypatch,
                                                          capsys):
    """Each tool's ``if __name__ == '__main__'`` block, run as the interpreter runs a script."""
    import runpy
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', [osp.join(ROOT, argv[0]), *argv[1:]])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(osp.join(ROOT, argv[0]), run_name='__main__')
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert_one_line_error(err, name)


def test_profile_ops_main_block_goes_through_run_cli(monkeypatch):
    """tools/analysis/profile_ops.py's ``__main__`` hands its ``main`` to ``run_cli``."""
    import runpy

    import micronet_mm.errors
    called = []
    monkeypatch.setattr(micronet_mm.errors, 'run_cli', called.append)
    path = osp.join(ROOT, 'tools/analysis/profile_ops.py')
    monkeypatch.setattr(sys, 'argv', [path, 'no-such-model'])
    runpy.run_path(path, run_name='__main__')
    assert len(called) == 1 and called[0].__name__ == 'main'


def test_test_py_show_dir_help_names_each_toolbox_location(capsys):
    """--show-dir's help says where each toolbox's hook puts the images (see enable_drawing)."""
    from tools.test import parse_args
    with pytest.raises(SystemExit):
        parse_args(['--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    for words in ('detection and pose put a relative one inside the run\'s timestamped log dir',
                  'classification uses it as given', 'segmentation writes into its '
                  'vis_data/vis_image'):
        assert words in help_text


def test_cli_user_error_is_one_line_exit_2(tmp_path):
    """The same through a real interpreter: a key no config has."""
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools/train.py'), CLS_CFG,
                           '--cfg-options', 'foo.bar=1'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert_one_line_error(proc.stderr, 'foo.bar')

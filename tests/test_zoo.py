"""The model zoo (model-index.yml + configs/*/metafile.yml), its registration with mmpretrain's
ModelHub, and the own-config example of README "Using the backbone"."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch
import yaml
from mmengine.config import Config

from conftest import ROOT

with open(osp.join(ROOT, 'model-index.yml')) as f:
    METAFILES = yaml.safe_load(f)['Import']


def _entries():
    for metafile in METAFILES:
        with open(osp.join(ROOT, metafile)) as f:
            data = yaml.safe_load(f)
        for model in data['Models']:
            yield metafile, data, model


ENTRIES = list(_entries())
CLS = [m['Name'] for metafile, _, m in ENTRIES if metafile == 'configs/pretrain/metafile.yml']
EXAMPLE = osp.join(ROOT, 'configs', 'det', 'example_own-config.py')


def test_model_index_lists_every_config_exactly_once():
    on_disk = sorted(osp.relpath(p, ROOT)
                     for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py')))
    listed = [m['Config'] for _, _, m in ENTRIES]
    assert sorted(listed) == on_disk  # every config, each once, and no file that is missing
    assert sorted(METAFILES) == [f'configs/{t}/metafile.yml' for t in
                                 ('det', 'pose', 'pretrain', 'seg')]
    for metafile, data, model in ENTRIES:
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
        assert osp.dirname(model['Config']) == osp.dirname(metafile)
        assert model['In Collection'] in [c['Name'] for c in data['Collections']]
    assert len(CLS) == 9


@pytest.mark.parametrize('entry', ENTRIES, ids=[m['Name'] for _, _, m in ENTRIES])
def test_results_are_marked_as_the_papers_and_weights_say_how_to_convert(entry):
    _, _, model = entry
    if model.get('Results'):
        assert 'paper' in model['Results Source'].lower()
        for result in model['Results']:
            assert all(isinstance(v, float) for v in result['Metrics'].values())
    assert 'Weights' not in model  # nothing loads without conversion
    for source in [model.get('Converted From'), *model.get('Alternative Weights', [])]:
        if source:
            assert source['Weights'].startswith('http')
            assert source['Convert'].startswith('python tools/model_converters/')


def _shape(model):
    h, w = model['Metadata']['FLOPs Input'].split('x')[-2:]
    return int(h), int(w)


@pytest.mark.parametrize('entry', ENTRIES, ids=[m['Name'] for _, _, m in ENTRIES])
def test_listed_params_and_madds_are_the_tools(entry):
    """What ``tools/analysis/get_flops.py`` counts for the whole model. Segmentation counts at
    1024x2048 on the meta device (tests/test_seg.py shows it equal to a real run)."""
    from micronet_mm.analysis import count_complexity
    from tools.analysis.get_flops import complexity_report
    from micronet_mm.tools_common import build_model
    _, _, model = entry
    cfg = Config.fromfile(osp.join(ROOT, model['Config']))
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None  # counting needs no weights
    if cfg.default_scope == 'mmseg':
        net = build_model(cfg).to('meta')
        counted = count_complexity(net, torch.empty(1, 3, *_shape(model), device='meta'),
                                   forward=lambda t: net(t, mode='tensor'))
    else:
        counted = complexity_report(cfg, _shape(model))['model']
    assert model['Metadata']['Parameters'] == counted.params
    assert model['Metadata']['FLOPs'] == round(counted.madds)


def test_list_models_lists_every_classification_config():
    import micronet_mm  # noqa: F401
    from mmpretrain import list_models
    assert list_models('*micronet*') == sorted(CLS)


@pytest.mark.parametrize('name', CLS)
def test_get_model_builds_each(name):
    import micronet_mm  # noqa: F401
    from mmpretrain import get_model
    model = get_model(name)
    (params,) = [m['Metadata']['Parameters'] for _, _, m in ENTRIES if m['Name'] == name]
    assert sum(p.numel() for p in model.parameters()) == params


def test_registration_waits_for_mmpretrain():
    """``import micronet_mm`` first, mmpretrain later: the names are there all the same."""
    code = ('import micronet_mm, sys; assert "mmpretrain.apis" not in sys.modules; '
            'from mmpretrain import list_models; print(len(list_models("micronet*")))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == str(len(CLS))


@pytest.fixture(scope='module')
def det_data():
    from micronet_mm.datasets.demo_det import ensure_demo_det
    return ensure_demo_det(osp.join(ROOT, 'data', 'demo_det'))


def build(cfg):
    from micronet_mm.tools_common import build_model
    return build_model(cfg).train()


def test_own_config_example_builds_and_trains_one_step(det_data):
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper

    from micronet_mm.models import MicroNet
    from mmdet.registry import DATASETS
    cfg = Config.fromfile(EXAMPLE)
    assert cfg.model.type == 'RetinaNet'  # mmdet's own type, not a MicroNet* helper
    assert 'depth' not in cfg.model.backbone  # _delete_ dropped ResNet's keys
    assert cfg.model.neck.in_channels == MicroNet('m3', out_indices=(1, 2, 3)).out_channels
    cfg.model.backbone.init_cfg = None  # no ImageNet checkpoint here
    model = build(cfg)
    dataset = DATASETS.build(dict(
        cfg.train_dataloader.dataset, data_root=det_data, ann_file='annotations/train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=('square', 'circle', 'triangle')),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='Resize', scale=(128, 128), keep_ratio=True),
                  dict(type='PackDetInputs')]))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    weight = model.backbone.stem.conv_k1.weight
    before = weight.detach().clone()
    losses = model.train_step(pseudo_collate([dataset[0], dataset[1]]), optim)
    assert {'loss_cls', 'loss_bbox'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert not torch.equal(before, weight.detach())  # the step reached the MicroNet backbone


AUTO_CASES = {
    'det': (EXAMPLE, 'neck', 'RetinaNet', 'MicroNetRetinaNet'),
    'seg': ('configs/seg/micronet-v1-m0-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py',
            'decode_head', 'EncoderDecoder', 'MicroNetEncoderDecoder'),
    'cls': ('configs/pretrain/micronet-m0_8xb64_in1k.py', 'head', 'ImageClassifier',
            'MicroNetImageClassifier'),
    'pose': ('configs/pose/td-hm_micronet-pose-m0_8xb64-250e_coco-256x192.py', 'head',
             'TopdownPoseEstimator', 'MicroNetTopdownPoseEstimator'),
}


@pytest.mark.parametrize('task', sorted(AUTO_CASES))
def test_auto_channels_outside_micronet_types_is_one_clear_error(task):
    from micronet_mm.errors import UserError
    path, field, plain, ours = AUTO_CASES[task]
    cfg = Config.fromfile(osp.join(ROOT, path))
    cfg.model.backbone.init_cfg = None
    cfg.model[field].in_channels = 'auto'
    cfg.model.type = plain
    with pytest.raises(UserError) as err:
        build(cfg)
    text = str(err.value)
    assert f"{cfg.model[field].type}: in_channels='auto' is filled only inside the MicroNet " \
           'model types' in text and ours in text and '\n' not in text
    cfg.model.type = ours  # the same config with our type builds
    assert build(cfg).backbone.out_channels

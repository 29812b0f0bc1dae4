"""Every config builds in its toolbox; recipes and MAdds are what the README claims."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import ROOT

CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)


def rel(path):
    return osp.relpath(path, ROOT)


def build(cfg):
    from tools.analysis.get_flops import build_model
    return build_model(cfg)


@pytest.mark.parametrize('path', CONFIGS, ids=rel)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    model = build(cfg)
    backbone = model.backbone
    assert type(backbone).__name__ == 'MicroNet'
    head = getattr(model, 'head', None)
    if head is not None and hasattr(head, 'in_channels'):
        # hand-written head widths must equal what the backbone produces
        assert head.in_channels == backbone.out_channels[-1]


PRETRAIN = {  # arch: (weight decay, dropout, MAdds with Dynamic Shift-Max, conv+linear)
    'm0': (3e-5, 0.05, 4.05e6, 3.45e6),
    'm1': (3e-5, 0.05, 6.12e6, 5.31e6),
    'm2': (3e-5, 0.1, 12.74e6, 10.34e6),
    'm3': (4e-5, 0.1, 20.81e6, 18.24e6),
}


@pytest.mark.parametrize('arch', PRETRAIN)
def test_pretrain_recipe(arch):
    cfg = Config.fromfile(osp.join(ROOT, f'configs/pretrain/micronet-{arch}_8xb64_in1k.py'))
    wd, dropout, _, _ = PRETRAIN[arch]
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ('SGD', 0.2, 0.9, wd)
    assert cfg.model.head.dropout == dropout
    assert cfg.auto_scale_lr.base_batch_size == 512
    assert cfg.train_dataloader.batch_size * 8 == 512
    assert cfg.train_cfg.max_epochs == 600
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and cosine.type == 'CosineAnnealingLR'
    assert cosine.end == 600
    crop = [t for t in cfg.train_pipeline if t.type == 'RandomResizedCrop'][0]
    assert crop.scale == 224
    assert any(t.type == 'RandomFlip' for t in cfg.train_pipeline)


@pytest.mark.parametrize('arch', PRETRAIN)
def test_get_flops_prints_paper_madds(arch, capsys):
    from tools.analysis.get_flops import main
    report = main([osp.join(ROOT, f'configs/pretrain/micronet-{arch}_8xb64_in1k.py')])
    _, _, total, conv_linear = PRETRAIN[arch]
    assert report['model'].madds == pytest.approx(total, rel=0.02)
    assert report['model'].conv_linear_madds == pytest.approx(conv_linear, rel=0.005)
    out = capsys.readouterr().out
    assert f'MAdds {total / 1e6:.2f}M' in out


def test_auto_channels_follow_the_backbone_config():
    """in_channels='auto' is resolved from the backbone actually configured (no second list)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/pretrain/micronet-m0_8xb64_in1k.py'))
    assert cfg.model.head.in_channels == 'auto'
    cfg.merge_from_dict({'model.backbone.arch': 'm3'})
    model = build(cfg)
    assert model.head.in_channels == 864 == model.backbone.out_channels[-1]


def test_auto_channels_reject_other_backbones():
    from micronet_mm.models.auto_channels import fill_auto_channels
    with pytest.raises(ValueError, match="needs a MicroNet backbone, got 'ResNet'"):
        fill_auto_channels(dict(in_channels='auto'), dict(type='ResNet', depth=18))

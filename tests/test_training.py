"""Real training on the embedded demo data: tools/train.py, tools/test.py, resume and mutual
learning (malicious checkpoints: test_security.py)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, train_demo

DEMO_CFG = osp.join(ROOT, 'configs/pretrain/micronet-m0_1xb32_demo-shapes.py')


@pytest.fixture(scope='session')
def demo_data():
    from micronet_mm.datasets.demo_shapes import ensure_demo_shapes
    return ensure_demo_shapes(osp.join(ROOT, 'data', 'demo_shapes'))


@pytest.fixture(scope='session')
def demo_run(demo_data, tmp_path_factory):
    """The full demo training through the command line, as the README runs it."""
    work = tmp_path_factory.mktemp('demo')
    train_demo(DEMO_CFG, work)
    return work


def test_trained_checkpoint_loads_in_test_py_and_beats_chance(demo_run):
    from tools.test import main
    metrics = main([DEMO_CFG, str(demo_run / 'epoch_30.pth'), '--work-dir', str(demo_run)])
    assert metrics['accuracy/top1'] > 60.0  # 4 balanced classes: chance is 25%


def test_resume_continues_from_checkpoint(demo_data, tmp_path):
    from tools.train import main
    short = ['train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1',
             'train_cfg.val_interval=100']
    main([DEMO_CFG, '--work-dir', str(tmp_path), '--cfg-options', *short])
    assert (tmp_path / 'epoch_1.pth').is_file()
    longer = ['train_cfg.max_epochs=2', 'default_hooks.checkpoint.interval=1',
              'train_cfg.val_interval=100']
    main([DEMO_CFG, '--work-dir', str(tmp_path), '--resume', '--cfg-options', *longer])
    ckpt = torch.load(tmp_path / 'epoch_2.pth', weights_only=True)
    assert ckpt['meta']['epoch'] == 2
    logs = ''.join(open(p).read() for p in tmp_path.glob('*/*.log'))
    assert 'resumed epoch: 1' in logs


def test_missing_data_is_reported_before_training(tmp_path):
    from micronet_mm.tools_common import MissingInputError
    from tools.train import main
    with pytest.raises(MissingInputError, match=r"data_root: '/nonexistent/shapes' does not "
                       r'exist.*--cfg-options'):
        main([DEMO_CFG, '--work-dir', str(tmp_path), '--cfg-options',
              'train_dataloader.dataset.data_root=/nonexistent/shapes'])


@pytest.mark.parametrize('arch', ['m0', 'm3'])
def test_mutual_learning_trains_both_networks(arch):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    import micronet_mm.models  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, f'configs/pretrain/micronet-{arch}_8xb64-mutual_in1k.py'))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    model.train()
    inputs = torch.randn(4, 3, 64, 64)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    losses = model.loss(inputs, samples)
    assert set(losses) >= {'loss', 'partner_loss', 'kl_loss', 'partner_kl_loss'}
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for net in (model.backbone, model.partner_backbone):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert type(model.partner_backbone).__name__ == 'MicroNet'
    assert model.partner_backbone.stages[1][0].lite.compress.conv.groups == 1
    assert model.backbone.stages[1][0].lite.compress.conv.groups > 1

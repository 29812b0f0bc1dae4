"""``norm_cfg`` (BN, SyncBN, others) in the backbone and the heads, ``with_cp``, and the SyncBN
configs: they build, revert to plain BN on the CPU (mmengine's ``revert_sync_batchnorm``),
run, and convert to deploy mode."""
import copy
import os.path as osp

import pytest
import torch
from conftest import ARCHS, ROOT, mmpretrain_scope, randomize_bn
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from micronet_mm.deploy import switch_to_deploy
from micronet_mm.models.backbones.micronet import MicroNet
from micronet_mm.models.heads import MicroNetClsHead, MRASPPHead
from micronet_mm.models.heads.pose_head import MicroPoseHead
from micronet_mm.tools_common import build_model

SYNC = dict(type='SyncBN', requires_grad=True)


def norm_types(module: nn.Module) -> set[type]:
    """The classes of ``module``'s normalization layers, any SyncBN as ``nn.SyncBatchNorm``
    (mmcv builds mmengine's subclass of it)."""
    return {nn.SyncBatchNorm if isinstance(m, nn.SyncBatchNorm) else type(m)
            for m in module.modules() if isinstance(m, (_BatchNorm, nn.GroupNorm, nn.LayerNorm))}


def heads(norm_cfg: dict | None) -> dict[str, nn.Module]:
    """The three heads, each built with ``norm_cfg`` (``None``: their defaults)."""
    kw = {} if norm_cfg is None else dict(norm_cfg=norm_cfg)
    with mmpretrain_scope():
        cls = MicroNetClsHead(num_classes=10, in_channels=32, mid_channels=16, **kw)
    return dict(
        cls=cls,
        pose=MicroPoseHead(in_channels=MicroNet('pose-m0').out_channels[-1], arch='pose-m0',
                           **kw),
        seg=MRASPPHead([16, 32], 24, skip_channels=8, num_classes=3, **kw))


@pytest.mark.parametrize('arch', ARCHS + ['v1-m0', 'pose-m0'])
def test_default_bn_and_syncbn_same_parameter_names(arch):
    """The default builds plain BatchNorm2d, as the reference code; SyncBN changes the layer
    type only, so a checkpoint of one loads into the other."""
    bn = MicroNet(arch)
    assert norm_types(bn) == {nn.BatchNorm2d}
    sync = MicroNet(arch, norm_cfg=SYNC)
    assert norm_types(sync) == {nn.SyncBatchNorm}
    assert list(bn.state_dict()) == list(sync.state_dict())
    sync.load_state_dict(bn.state_dict())


def test_heads_default_norms_and_syncbn():
    default = heads(None)
    assert norm_types(default['cls']) == {nn.BatchNorm1d}
    assert norm_types(default['pose']) == {nn.BatchNorm2d}
    assert norm_types(default['seg']) == {nn.BatchNorm2d}
    sync = heads(SYNC)
    for name, head in sync.items():
        assert norm_types(head) == {nn.SyncBatchNorm}, name
        assert list(head.state_dict()) == list(default[name].state_dict()), name
    # 'BN' given to the classifier head is its BatchNorm1d (it normalizes (N, C) features)
    with mmpretrain_scope():
        assert norm_types(MicroNetClsHead(10, 32, 16, norm_cfg=dict(type='BN'))) == {
            nn.BatchNorm1d}
    with pytest.raises(ValueError, match='MRASPPHead: norm_cfg=None'):
        MRASPPHead([16, 32], 24, num_classes=3, norm_cfg=None)


@pytest.mark.parametrize('arch', ['m0', 'm3'])
def test_syncbn_reverted_runs_and_deploys_on_cpu(arch):
    """A SyncBN backbone, reverted by mmengine, gives the outputs of the same weights in a BN
    backbone, and converts to every deploy backend with the same outputs."""
    sync = MicroNet(arch, norm_cfg=SYNC, out_indices=(1, 3))
    randomize_bn(sync)
    bn = MicroNet(arch, out_indices=(1, 3))
    bn.load_state_dict(sync.state_dict())
    reverted = revert_sync_batchnorm(sync).eval()
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in reverted.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = bn.eval()(x)
        got = reverted(x)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-6)
        for backend in ('pytorch', 'native', 'onnxruntime'):
            deploy = switch_to_deploy(copy.deepcopy(reverted), backend)
            for a, b in zip(deploy(x), want):
                assert (a - b).abs().max() <= 1e-4 * b.abs().max(), backend


def test_syncbn_heads_reverted_run_and_deploy():
    default, sync = heads(None), heads(SYNC)
    for name in default:
        randomize_bn(sync[name])
        default[name].load_state_dict(sync[name].state_dict())
    feats = dict(cls=(torch.randn(2, 32, 4, 4),),
                 pose=(torch.randn(2, default['pose'].in_channels, 4, 3),),
                 seg=[torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)])
    for name, head in sync.items():
        reverted = revert_sync_batchnorm(head).eval()
        with torch.no_grad():
            want = default[name].eval()(feats[name])
            assert torch.allclose(reverted(feats[name]), want, atol=1e-6), name
            out = switch_to_deploy(reverted, 'native')(feats[name])
            assert (out - want).abs().max() <= 1e-4 * want.abs().max(), name


def test_norm_eval_freezes_syncbn():
    model = MicroNet('m0', norm_cfg=SYNC, norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) and not m.training for m in norms)
    reverted = revert_sync_batchnorm(model).train()  # the single-process form keeps it
    assert all(not m.training for m in reverted.modules() if isinstance(m, _BatchNorm))


def test_deploy_refuses_norms_it_cannot_fold():
    model = MicroNet('m0', norm_cfg=dict(type='GN', num_groups=1))
    model(torch.randn(1, 3, 32, 32))  # builds and runs
    with pytest.raises(ValueError, match=r"stem\.bn1 is a GroupNorm.*norm_cfg=dict\(type='BN'\)"):
        switch_to_deploy(model)


def _train_step(model: nn.Module, x: torch.Tensor):
    out = model(x)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in out)
    loss.backward()
    return ([o.detach() for o in out], [p.grad.clone() for p in model.parameters()],
            [b.clone() for b in model.buffers()])


@pytest.mark.parametrize('arch', ['m0', 'm3'])
def test_with_cp_same_step_and_statistics(arch):
    """Checkpointed blocks recompute their forward in backward (each block runs twice) and
    give the same outputs, gradients and BN running statistics (updated once) as without."""
    plain = MicroNet(arch, out_indices=(2, 3)).train()
    cp = MicroNet(arch, out_indices=(2, 3), with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    runs = []
    block = cp.stages[1][0]
    block.register_forward_pre_hook(lambda *args: runs.append(1))
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    out_p, grads_p, bufs_p = _train_step(plain, x)
    out_c, grads_c, bufs_c = _train_step(cp, x)
    assert len(runs) == 2  # forward, then the recomputation in backward
    for a, b in zip(out_c, out_p):
        assert torch.equal(a, b)
    for a, b in zip(grads_c, grads_p):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(bufs_c, bufs_p):
        assert torch.equal(a, b)  # running statistics and batch counters updated once
    # eval and no_grad: no checkpointing
    runs.clear()
    with torch.no_grad():
        cp(x)
    cp.eval()(x)
    assert len(runs) == 2


SYNC_CONFIGS = [osp.join('det', n) for n in ('retinanet_micronet_m2.py', 'retinanet_micronet_m3.py',
                                              'faster-rcnn_micronet_m2_fpn.py',
                                              'faster-rcnn_micronet_m3_fpn.py')] + [
    osp.join('seg', f'micronet-v1-m{i}-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py')
    for i in range(4)]
DEMO_CONFIGS = ['det/retinanet_micronet_m3_demo-shapes.py',
                'seg/micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-cityscapes-128x256.py']


@pytest.mark.parametrize('name, norm', [(n, 'SyncBN') for n in SYNC_CONFIGS]
                         + [(n, 'BN') for n in DEMO_CONFIGS])
def test_configs_norm_type(name, norm):
    """Multi-GPU configs normalize with SyncBN, the one-process demo configs with plain BN."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    assert cfg.model.backbone.norm_cfg.type == norm
    if 'decode_head' in cfg.model:
        assert cfg.model.decode_head.norm_cfg.type == norm


@pytest.mark.parametrize('name', [SYNC_CONFIGS[1], SYNC_CONFIGS[4]], ids=['retinanet', 'seg'])
def test_syncbn_config_builds_reverts_runs_and_deploys(name):
    """A multi-GPU config on the CPU: SyncBN layers as built, plain BN after
    ``revert_sync_batchnorm`` (what mmengine's runner does in one process); then a forward
    and the deploy conversion, with the same outputs."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    assert nn.SyncBatchNorm in norm_types(model.backbone)
    model = revert_sync_batchnorm(model)
    assert nn.SyncBatchNorm not in norm_types(model)
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        want = model._forward(x)
        got = switch_to_deploy(copy.deepcopy(model), 'native')._forward(x)
    want = want if isinstance(want, (tuple, list)) else [want]
    got = got if isinstance(got, (tuple, list)) else [got]
    for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-6

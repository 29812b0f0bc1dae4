"""Deploy mode (micronet_mm/deploy/), ONNX export (tools/deployment/export_onnx.py) and the
profile's smoke run (tools/analysis/profile_ops.py; the benchmark's is in test_benchmark.py)."""
import copy

import numpy as np
import pytest
import torch
from conftest import (ARCHS, DET_DEMO, M0_CONFIG, POSE_DEMO, ROOT, SEG_DEMO, calibrate,
                      dense_trained_like, mmpretrain_scope, randomize_bn, rel_err, trained_like)
from torch import nn

from micronet_mm.deploy import (ChannelPermute, FactorizedDepthwise, FastShiftMax, FusedPointwise,
                                FusedShiftMax, MergedDepthwise, switch_to_deploy)
from micronet_mm.deploy.rewrites.native_block import NativeProgram
from micronet_mm.models import MicroNet
from micronet_mm.ops import (ChannelShuffle, DynamicShiftMax, MicroFactorizedDepthwise,
                             fused_shift_max)

#: the deploy form of Dynamic Shift-Max per backend: the default ``'pytorch'`` and ONNX Runtime
#: standard operators; the native backend's per-layer form runs the fused C++ operator (it must
#: be built: tools/setup_env.sh). The native backend itself runs the stem and the stages as
#: native programs (NativeProgram).
SHIFT_MAX_FORM = {'pytorch': FastShiftMax, 'native': FusedShiftMax,
                  'native-layers': FusedShiftMax, 'onnxruntime': FastShiftMax}
BACKBONE_BACKENDS = ['pytorch', 'native', 'native-layers', 'onnxruntime']


def deploy_as(model: nn.Module, backend: str) -> nn.Module:
    """``switch_to_deploy(model, backend)``; ``'native-layers'``: the native backend's
    per-layer form (what it takes where the operators are not built, and for the parts that
    have no program layer), with the stem and stages not made programs."""
    if backend != 'native-layers':
        return switch_to_deploy(model, backend)
    from micronet_mm.deploy.backends.native import per_layer
    with per_layer():
        return switch_to_deploy(model, 'native')

@pytest.mark.parametrize('arch', ['m0', 'm1', 'm2', 'm3', 'v1-m2', 'v1-m3'])
@pytest.mark.parametrize('backend', BACKBONE_BACKENDS)
def test_deploy_backbone_matches(arch, backend):
    model = calibrate(trained_like(MicroNet(arch, out_indices=(0, 1, 2, 3))), (96, 128),
                      run=lambda m, x: m(x))
    # not square: the depthwise bias maps depend on the width; a fixed draw, so that a rounding
    # comparison on these ill-conditioned random models does not change from run to run
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with fused_shift_max.use_fused(False):  # the reference code of every Shift-Max
            ref = model(x)
            ref64 = copy.deepcopy(model).double()(x.double())
        # the model's own float64 rounding: the fused Shift-Max operator against the reference
        # code (both exact; random deep models amplify rounding, v1-m3's last stage to ~1e-8)
        own64 = copy.deepcopy(model).double()(x.double())
        deploy = deploy_as(copy.deepcopy(model), backend)
        out = deploy(x)
        out64 = deploy_as(copy.deepcopy(model).double(), backend)(x.double())
    assert rel_err(ref[-1][0], ref[-1][1]) > 0.1  # the last stage depends on the image
    for o, r, o64, r64, w64 in zip(out, ref, out64, ref64, own64):
        assert o.shape == r.shape
        # the rewrite is exact: float64 to 1e-9, or to 10x the model's own float64 rounding
        assert rel_err(o64, r64) < max(1e-9, 10 * rel_err(w64, r64))
        # float32: 1e-4 relative, unless the original's own rounding (vs float64) is larger
        # (v1-m2/v1-m3: 12-15 Shift-Max blocks in series reach ~1e-4 by themselves)
        assert rel_err(o, r) < max(1e-4, 4 * rel_err(r, r64))
    mods = list(deploy.modules())
    assert len(mods) < len(list(model.modules()))
    assert not any(isinstance(m, (nn.BatchNorm2d, DynamicShiftMax, MicroFactorizedDepthwise,
                                  ChannelShuffle)) for m in mods)
    if backend == 'native':  # the stem and every stage one native program, nothing else
        leaves = [m for m in mods[1:] if not isinstance(m, nn.ModuleList)]
        assert [type(m) for m in leaves] == [NativeProgram] * (1 + len(model.stages))
        assert all(p.program[1] > 1 for p in leaves)
        return
    n_dsm = sum(isinstance(m, DynamicShiftMax) for m in model.modules())
    assert sum(isinstance(m, SHIFT_MAX_FORM[backend]) for m in mods) == n_dsm > 0
    assert all(m.use_matmul == (backend != 'onnxruntime')
               for m in mods if isinstance(m, FusedPointwise))
    # one kxk convolution per factorized pair (plus the stem's); for ONNX Runtime the pairs
    # without channel multipliers stay two convolutions with folded BN
    pairs = [m for m in model.modules() if isinstance(m, MicroFactorizedDepthwise)]
    n_fact = sum(FactorizedDepthwise.applies(m) for m in pairs) if backend == 'onnxruntime' else 0
    assert sum(isinstance(m, FactorizedDepthwise) for m in mods) == n_fact
    assert sum(isinstance(m, MergedDepthwise) for m in mods) == len(pairs) - n_fact
    # the last two shuffles of every C block are one permutation
    n_shuffles = sum(isinstance(m, ChannelShuffle) for m in model.modules())
    assert 0 < sum(isinstance(m, ChannelPermute) for m in mods) < n_shuffles


@pytest.mark.parametrize('backend', BACKBONE_BACKENDS)
def test_deploy_dilated_and_static(backend):
    """Output stride 16 (dilated depthwise) and static Shift-Max convert exactly too."""
    for kwargs in (dict(output_stride=16), dict(act_cfg=dict(dynamic=False))):
        model = trained_like(MicroNet('m1', **kwargs))
        for m in model.modules():
            if isinstance(m, DynamicShiftMax) and m.fc is None:
                m.static_coef.data.uniform_(-0.5, 1.5)  # outside [0, 1]: no clamp may apply
        x = torch.randn(1, 3, 64, 80)
        with torch.no_grad():
            ref = model(x)[-1]
            out = deploy_as(copy.deepcopy(model), backend)(x)[-1]
        assert rel_err(out, ref) < 1e-4, kwargs


@pytest.mark.parametrize('arch', ['m0', 'm1', 'm2', 'm3'])
def test_deploy_classifier_logits_match(arch):
    from micronet_mm.models import MicroNetImageClassifier
    from micronet_mm.models.heads.cls_head import MicroNetClsHead
    with mmpretrain_scope():
        model = MicroNetImageClassifier(
            backbone=dict(type='MicroNet', arch=arch),
            head=dict(type='MicroNetClsHead', num_classes=1000, in_channels='auto',
                      mid_channels=640, dropout=0.1))
    calibrate(trained_like(model), (224, 224), run=lambda m, x: m(x, mode='tensor'))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = model(x, mode='tensor')
        deploy = switch_to_deploy(copy.deepcopy(model))
        out = deploy(x, mode='tensor')
    assert rel_err(ref[0], ref[1]) > 0.1  # the logits depend on the image
    assert rel_err(out, ref) < 1e-4
    head = deploy.head
    assert isinstance(head, MicroNetClsHead)
    assert isinstance(head.bn1, nn.Identity) and isinstance(head.bn2, nn.Identity)
    assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout))
                   for m in deploy.modules())


def test_deploy_rejects_unknown_backend():
    with pytest.raises(ValueError, match='backend'):
        switch_to_deploy(MicroNet('m0'), backend='tensorrt')


def _write_m0_checkpoint(path):
    from tools.deployment.export_onnx import load_classifier
    model = trained_like(load_classifier(M0_CONFIG, None))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


@pytest.mark.parametrize('deploy', [False, True])
def test_export_onnx_m0(tmp_path, deploy, capsys):
    ort = pytest.importorskip('onnxruntime')
    import numpy as np

    from tools.deployment.export_onnx import main
    ckpt = tmp_path / 'm0.pth'
    model = _write_m0_checkpoint(ckpt)
    out = tmp_path / 'm0.onnx'
    argv = [M0_CONFIG, str(ckpt), '--out', str(out), '--shape', '128', '160']
    diff = main(argv + (['--deploy'] if deploy else []))
    assert out.is_file() and diff <= 1e-4
    printed = capsys.readouterr().out
    assert 'max abs diff' in printed and 'threshold 0.0001' in printed
    # exported with batch 1, run with batch 2; compare with the checkpoint's weights
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    x = torch.randn(2, 3, 128, 160)
    got = sess.run(None, {'input': x.numpy()})[0]
    with torch.no_grad():
        ref = model(x, mode='tensor').numpy()
    assert got.shape == (2, 1000)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_export_onnx_dynamic_shape_cli(tmp_path, capsys):
    """``--dynamic-shape``: the tool checks the file at the given size and 32 pixels wider, and
    it runs at a third size; a fixed-size export refuses that size."""
    ort = pytest.importorskip('onnxruntime')
    from tools.deployment.export_onnx import main
    ckpt = tmp_path / 'm0.pth'
    model = _write_m0_checkpoint(ckpt)
    out, fixed = tmp_path / 'm0.onnx', tmp_path / 'm0-fixed.onnx'
    main([M0_CONFIG, str(ckpt), '--out', str(out), '--shape', '96', '96', '--deploy',
          '--dynamic-shape'])
    printed = capsys.readouterr().out
    assert 'input (batch, 3, height, width)' in printed
    assert '(batch 1 and 2, 96x96 and 96x128)' in printed and '-> OK' in printed
    x = torch.randn(1, 3, 64, 160)
    got = ort.InferenceSession(str(out), providers=['CPUExecutionProvider']).run(
        None, {'input': x.numpy()})[0]
    with torch.no_grad():
        ref = model(x, mode='tensor')
    assert rel_err(torch.from_numpy(got), ref) < 1e-4
    main([M0_CONFIG, str(ckpt), '--out', str(fixed), '--shape', '96', '96', '--deploy'])
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        ort.InferenceSession(str(fixed), providers=['CPUExecutionProvider']).run(
            None, {'input': x.numpy()})


def test_export_onnx_fails_above_threshold(tmp_path):
    pytest.importorskip('onnxruntime')
    from tools.deployment.export_onnx import main
    ckpt = tmp_path / 'm0.pth'
    _write_m0_checkpoint(ckpt)
    with pytest.raises(SystemExit) as err:  # no float export is within 0
        main([M0_CONFIG, str(ckpt), '--out', str(tmp_path / 'a.onnx'), '--shape', '64', '64',
              '--deploy', '--atol', '0'])
    assert err.value.code == 1


def test_export_onnx_missing_inputs(tmp_path):
    from micronet_mm.tools_common import MissingInputError
    from tools.deployment.export_onnx import main
    with pytest.raises(MissingInputError, match='checkpoint not found'):
        main([M0_CONFIG, str(tmp_path / 'nope.pth')])
    ckpt = tmp_path / 'x.pth'
    ckpt.write_bytes(b'')
    with pytest.raises(MissingInputError, match='config file not found'):
        main([str(tmp_path / 'nope.py'), str(ckpt)])


def test_profile_ops_smoke(capsys):
    """tools/analysis/profile_ops.py on M0 with two runs:
    both ORT tables, the role table for the deploy export, and the torch.profiler table."""
    pytest.importorskip('onnxruntime')
    from tools.analysis.profile_ops import main
    main(['m0', '--runs', '2'])
    out = capsys.readouterr().out
    assert '## ORT m0-deploy:' in out and '## ORT mnv3-s-050:' in out
    # OpenVINO per-node profiles: both M0 deploy exports and the baseline; the native
    # Shift-Max nodes run as ``Reference`` nodes
    assert out.count('| node type | ms/run | share | nodes |') == 3
    assert '## OpenVINO m0 openvino deploy export' in out and '| Reference |' in out
    # the fused export node by node: ONE Program node (stem, stages and the head's two
    # programs, merged by the export), named after the first
    nodes = out.split('| slowest nodes | node type | ms/run |')
    assert len(nodes) == 2
    assert '/model/backbone/stem/Program | Reference |' in nodes[1]
    assert '/model/head/pool/Program' not in nodes[1]
    assert '/model/backbone/stages.3/Program' not in nodes[1]
    assert out.count('| op type | ms/run | share | nodes |') == 2
    assert out.count('| role | ms/run | share | nodes |') == 1
    assert '| Shift-Max fusions' in out and '## torch.profiler, m0 deploy eager' in out


def test_switch_to_deploy_parts():
    """A backbone and a head converted on their own give the whole model's output."""
    from micronet_mm.models.heads.cls_head import MicroNetClsHead
    backbone = trained_like(MicroNet('m0'))
    with mmpretrain_scope():
        head = MicroNetClsHead(num_classes=10, in_channels=384, mid_channels=64)
    trained_like(head)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = head(backbone(x))
        b2 = switch_to_deploy(copy.deepcopy(backbone))
        h2 = switch_to_deploy(copy.deepcopy(head))
        out = h2(b2(x))
    assert rel_err(out, ref) < 1e-4
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for m in [*b2.modules(), *h2.modules()])


@pytest.mark.parametrize('arch', ['m1', 'm2'])
def test_deploy_onnx_graph(tmp_path, arch):
    """The ``backend='onnxruntime'`` deploy model exported with a dynamic batch: ONNX Runtime
    matches the original model (trained-like weights, batch 2), and the graph is lean: no
    Shape/Squeeze/Unsqueeze/Concat subgraphs, one Gather per Shift-Max shift and per (composed)
    channel permutation, no depthwise bias map broadcast over rows."""
    ort = pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')
    from tools.deployment.export_onnx import LogitsWrapper, export
    from micronet_mm.models import MicroNetImageClassifier
    with mmpretrain_scope():
        model = MicroNetImageClassifier(
            backbone=dict(type='MicroNet', arch=arch),
            head=dict(type='MicroNetClsHead', num_classes=100, in_channels='auto',
                      mid_channels=256, dropout=0.1))
    trained_like(model)
    deploy = switch_to_deploy(copy.deepcopy(model), 'onnxruntime')
    path = str(tmp_path / f'{arch}.onnx')
    export(deploy, path, (96, 128))
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert not {'Shape', 'Squeeze', 'Unsqueeze', 'Concat'} & set(ops)
    mods = list(deploy.modules())
    n_gather = (sum(m.num_shifts - 1 for m in mods if isinstance(m, FastShiftMax))
                + sum(isinstance(m, ChannelPermute) for m in mods))
    assert ops.count('Gather') == n_gather
    # every dynamic Shift-Max takes its input prescaled: a HardSigmoid (fused into fc2's Gemm)
    dsms = [m for m in mods if isinstance(m, FastShiftMax)]
    assert all(m.input_scale == 4.0 for m in dsms)
    assert ops.count('HardSigmoid') == len(dsms)
    assert any(isinstance(m, FactorizedDepthwise) for m in mods)
    assert all(m.full_map for m in mods if isinstance(m, MergedDepthwise))
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ref = LogitsWrapper(model)(x)
    got = torch.from_numpy(sess.run(None, {'input': x.numpy()})[0])
    assert rel_err(got, ref) < 1e-4


@pytest.mark.parametrize('backend', ['pytorch', 'native', 'onnxruntime'])
def test_deploy_twice_is_a_no_op(backend):
    model = trained_like(MicroNet('m1'))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)[-1]
        once = switch_to_deploy(copy.deepcopy(model), backend)
        out1 = once(x)[-1]
        out2 = switch_to_deploy(once, backend)(x)[-1]
    assert rel_err(out1, ref) < 1e-4 and torch.equal(out1, out2)


# ------------------------------------------------------------------ dense tasks: pose, seg

POSE_CONFIGS = [f'{ROOT}/configs/pose/td-hm_micronet-pose-m{i}_8xb64-250e_coco-256x192.py'
                for i in range(4)]
SEG_CONFIGS = [f'{ROOT}/configs/seg/micronet-v1-m{i}-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py'
               for i in range(4)]


@pytest.mark.parametrize('backend', ['pytorch', 'native', 'onnxruntime'])
@pytest.mark.parametrize('path, shape', [(p, (128, 96)) for p in POSE_CONFIGS]
                         + [(p, (128, 256)) for p in SEG_CONFIGS],
                         ids=[f'pose-m{i}' for i in range(4)] + [f'v1-m{i}' for i in range(4)])
def test_deploy_dense_outputs_match(path, shape, backend):
    """Pose heatmaps and segmentation logits (``mode='tensor'``) of the deploy model equal the
    trained model's, for every pose and Cityscapes config: in float64 to 1e-9 relative (the
    rewrite is exact), in float32 to 1e-4 relative, or, where random weights leave the original
    model's own float32 rounding above that (pose: softmax attentions and Shift-Max maxima in
    series), to within 4x the original's own float32 error against float64."""
    from micronet_mm.ops import GroupPointwise, SpatialAttention
    model = dense_trained_like(path, shape)
    x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(0))  # a fixed draw
    with torch.no_grad():
        with fused_shift_max.use_fused(False):  # the reference code of every Shift-Max
            ref = model(x, None, mode='tensor')
            ref64 = copy.deepcopy(model).double()(x.double(), None, mode='tensor')
        deploy = switch_to_deploy(copy.deepcopy(model), backend)
        out = deploy(x, None, mode='tensor')
        out64 = switch_to_deploy(copy.deepcopy(model).double(), backend)(
            x.double(), None, mode='tensor')
    # the outputs depend on the image, so matching them means something
    assert rel_err(ref[0], ref[1]) > 0.1
    stride = 4 if '/pose/' in path else 8
    assert out.shape == ref.shape and out.shape[2:] == (shape[0] // stride, shape[1] // stride)
    assert out64.dtype == torch.float64 and rel_err(out64, ref64) < 1e-9
    own = rel_err(ref.double(), ref64)  # the original's float32 rounding
    factor = 4
    if backend == 'native':
        # the programs' float32 kernels round 2-3x more than the reference and the per-layer
        # form (docs/deploy.md), which the pose heads
        # amplify: within 8x of the larger of the two others' rounding
        with torch.no_grad():
            layers = deploy_as(copy.deepcopy(model), 'native-layers')(x, None, mode='tensor')
        own, factor = max(own, rel_err(layers.double(), ref64)), 8
    assert rel_err(out.double(), ref64) < max(1e-4, factor * own)
    if '/seg/' in path:
        assert rel_err(out, ref) < 1e-4
    mods, orig = list(deploy.modules()), list(model.modules())
    assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, DynamicShiftMax,
                                  MicroFactorizedDepthwise, ChannelShuffle, GroupPointwise))
                   for m in mods)
    head = deploy.head if '/pose/' in path else deploy.decode_head
    n_dsm = sum(isinstance(m, DynamicShiftMax) for m in orig)
    if backend == 'native':  # the backbone's stem and stages as programs, the head per layer
        programs = [m for m in deploy.backbone.modules() if isinstance(m, NativeProgram)]
        assert len(programs) == 1 + sum(len(s) > 0 for s in model.backbone.stages)
        n_dsm = sum(isinstance(m, DynamicShiftMax)  # MR-ASPP has none
                    for m in (model.head if '/pose/' in path else model.decode_head).modules())
    assert sum(isinstance(m, SHIFT_MAX_FORM[backend]) for m in mods) == n_dsm
    assert n_dsm > 0 or backend == 'native' and '/seg/' in path
    assert any(isinstance(m, FusedPointwise) for m in head.modules())
    # the spatial attentions are kept (pose head: one per activation slot; MR-ASPP: one)
    n_sa = sum(isinstance(m, SpatialAttention) for m in orig)
    assert sum(isinstance(m, SpatialAttention) for m in mods) == n_sa > 0
    if '/pose/' in path:
        assert sum(isinstance(m, SHIFT_MAX_FORM[backend]) for m in head.modules()) >= n_sa


@pytest.mark.parametrize('deploy', [False, True], ids=['plain', 'deploy'])
@pytest.mark.parametrize('task, config, shape, out_shape', [
    ('pose', POSE_DEMO, (64, 48), (17, 16, 12)),  # the codec's input size
    ('segmentation', SEG_DEMO, (128, 256), (19, 16, 32))])  # the crop size
def test_export_onnx_dense(tmp_path, capsys, task, config, shape, out_shape, deploy):
    """Pose heatmaps and segmentation logits exported from a checkpoint, the input size taken
    from the config, checked by the tool and again here with batch 3."""
    ort = pytest.importorskip('onnxruntime')
    from tools.deployment.export_onnx import main
    model = dense_trained_like(config, shape)
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'model.onnx'
    # pose with random weights: the attention softmaxes amplify float32 rounding (see
    # test_deploy_dense_outputs_match); on an AVX2 host ONNX Runtime's kernels round
    # differently and the tool's default check (rtol 1e-4) measured 1.2-1.6e-4 of max|output|,
    # so pose is checked at the tool's --rtol 1e-3 and segmentation at its default 1e-4
    rtol = 1e-3 if task == 'pose' else 1e-4
    diff = main([config, str(ckpt), '--out', str(out)] + (['--deploy'] if deploy else [])
                + (['--rtol', str(rtol)] if task == 'pose' else []))
    printed = capsys.readouterr().out
    assert f'{task}, input (batch, 3, {shape[0]}, {shape[1]})' in printed
    assert f'rtol {rtol:g}' in printed and '-> OK' in printed
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert sess.get_outputs()[0].name == ('heatmaps' if task == 'pose' else 'logits')
    x = torch.randn(3, 3, *shape)
    got = torch.from_numpy(sess.run(None, {'input': x.numpy()})[0])
    with torch.no_grad(), fused_shift_max.use_fused(False):  # the code the export traces
        ref = model(x, None, mode='tensor')
    assert tuple(got.shape) == (3, *out_shape) and diff <= rtol * ref.abs().max() + 1e-4
    # a fresh batch, relative to the whole output (pose looser, as above)
    assert rel_err(got, ref) < (1e-4 if task == 'segmentation' else 3e-3)


@pytest.mark.parametrize('deploy', [False, True], ids=['plain', 'deploy'])
def test_export_onnx_detector(tmp_path, capsys, deploy):
    """RetinaNet's head outputs (``--head-outputs``) from a checkpoint: the input size from the
    test pipeline, every anchor's class logits and box deltas in mmdet's order (checked against
    the head's own per-level outputs)."""
    ort = pytest.importorskip('onnxruntime')
    from tools.deployment.export_onnx import load_model, main
    config = f'{ROOT}/configs/det/retinanet_micronet_m3_demo-shapes.py'
    model, task, shape = load_model(config, None)
    assert (task, shape) == ('detection', (128, 128))
    randomize_bn(model)
    ckpt = tmp_path / 'det.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'det.onnx'
    main([config, str(ckpt), '--out', str(out), '--head-outputs']
         + (['--deploy'] if deploy else []))
    printed = capsys.readouterr().out
    assert 'detection, input (batch, 3, 128, 128), output scores_and_deltas' in printed
    assert '-> OK' in printed
    x = torch.randn(2, 3, 128, 128)
    got = ort.InferenceSession(str(out), providers=['CPUExecutionProvider']).run(
        None, {'input': x.numpy()})[0]
    with torch.no_grad(), fused_shift_max.use_fused(False):
        cls_scores, bbox_preds = model.eval()(x, None, mode='tensor')
    anchors = model.bbox_head.num_base_priors
    assert got.shape == (2, sum(c.shape[2] * c.shape[3] for c in cls_scores) * anchors, 3 + 4)
    level, row = 1, sum(c.shape[2] * c.shape[3] for c in cls_scores[:1]) * anchors
    h, w, a = 2, 3, anchors - 1  # one anchor of level 1, counted in mmdet's order
    row += (h * cls_scores[level].shape[3] + w) * anchors + a
    want_cls = cls_scores[level][:, a * 3:(a + 1) * 3, h, w]
    want_box = bbox_preds[level][:, a * 4:(a + 1) * 4, h, w]
    np.testing.assert_allclose(got[:, row, :3], want_cls.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[:, row, 3:], want_box.numpy(), rtol=1e-4, atol=1e-4)


def assert_ort_matches_at_two_sizes(path: str, model, shape, other, pose: bool) -> None:
    """The ONNX file ``path`` in ONNX Runtime matches ``model`` as trained on a batch of 1 at
    ``shape`` and a batch of 2 at ``other``."""
    from micronet_mm.runtime.onnxruntime import open_session
    from tools.deployment.export_onnx import LogitsWrapper
    sess = open_session(path)
    g = torch.Generator().manual_seed(0)
    for n, hw in ((1, shape), (2, other)):
        x = torch.randn(n, 3, *hw, generator=g)
        with torch.no_grad(), fused_shift_max.use_fused(False):
            ref = LogitsWrapper(model)(x)
        got = torch.from_numpy(sess.run(None, {'input': x.numpy()})[0])
        assert got.shape == ref.shape
        # pose with random weights: its attention softmaxes amplify float32 rounding (PyTorch's
        # own float32 output measured up to 2.4e-3 from float64; see test_export_onnx_dense);
        # a size-specific constant left in the graph gives errors of 2e-2 to 1
        assert rel_err(got, ref) < (3e-3 if pose else 1e-4), hw


@pytest.mark.parametrize('deploy', [False, True], ids=['plain', 'deploy'])
@pytest.mark.parametrize('task, shape, other', [
    ('classifier', (96, 128), (64, 160)),
    ('pose', (64, 48), (96, 64)),
    ('segmentation', (128, 256), (96, 160))])
def test_export_onnx_dynamic_hw(tmp_path, task, shape, other, deploy):
    """The model as trained and the ``onnxruntime`` deploy model, exported with dynamic batch,
    height and width, run in ONNX Runtime at the traced size and at another one, and match the
    model as trained at both: no rewrite leaves a constant of the traced size in the graph (the
    merged stem's and depthwise convolutions' bias maps, the Shift-Max pooled mean)."""
    pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')
    from conftest import build_classifier
    from tools.deployment.export_onnx import export
    if task == 'classifier':
        model = trained_like(build_classifier('m1'))
    else:
        model = dense_trained_like(POSE_DEMO if task == 'pose' else SEG_DEMO, shape)
    exported = model
    if deploy:
        exported = switch_to_deploy(copy.deepcopy(model), 'onnxruntime')
        assert any(isinstance(m, MergedDepthwise) for m in exported.modules())  # the stem
    path = str(tmp_path / f'{task}.onnx')
    export(exported, path, shape, dynamic_hw=True)
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ['batch', '', 'height', 'width']
    assert_ort_matches_at_two_sizes(path, model, shape, other, pose=task == 'pose')


#: every kind of model the default deploy form must export: the four classifiers and the
#: demo pose model, segmentor and detector (name, input size, a second size)
DEFAULT_EXPORT_CASES = [*[(f'classifier-{a}', (64, 80), (96, 64)) for a in ARCHS],
                        ('pose', (64, 48), (96, 64)), ('segmentation', (128, 256), (96, 160)),
                        ('detection', (64, 96), (96, 128))]


@pytest.mark.parametrize('name, shape, other', DEFAULT_EXPORT_CASES,
                         ids=[c[0] for c in DEFAULT_EXPORT_CASES])
def test_default_deploy_exports_standard_onnx(tmp_path, name, shape, other):
    """``switch_to_deploy(model)`` without a backend gives standard operators only: the model
    exports with ``torch.onnx.export`` (dynamic batch, height and width), every node of the graph
    is in the standard ONNX domain, and ONNX Runtime matches the model as trained at two sizes."""
    pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')
    from conftest import build_classifier
    from tools.deployment.export_onnx import export
    if name.startswith('classifier'):
        model = trained_like(build_classifier(name.split('-')[1]))
    else:
        model = dense_trained_like({'pose': POSE_DEMO, 'segmentation': SEG_DEMO,
                                    'detection': DET_DEMO}[name], shape)
    deploy = switch_to_deploy(copy.deepcopy(model))
    assert not any(isinstance(m, (NativeProgram, FusedShiftMax)) for m in deploy.modules())
    path = str(tmp_path / 'model.onnx')
    export(deploy, path, shape, dynamic_hw=True)
    graph = onnx.load(path).graph
    assert {n.domain for n in graph.node} <= {'', 'ai.onnx'}
    assert_ort_matches_at_two_sizes(path, model, shape, other, pose=name == 'pose')


@pytest.mark.parametrize('deploy', [False, True], ids=['plain', 'deploy'])
def test_export_onnx_detector_end_to_end(tmp_path, capsys, deploy):
    """RetinaNet end to end (anchors, decoding, threshold, NMS in the graph): the tool checks it
    against mmdet's ``predict`` at two sizes, and here ONNX Runtime's boxes, scores and labels
    at two other sizes and batches equal mmdet's own predictions (``rescale=False``, the
    config's test_cfg) on the same tensor: same detections and labels, boxes within 1e-3 of
    the largest coordinate, scores within 1e-4."""
    ort = pytest.importorskip('onnxruntime')
    from mmdet.structures import DetDataSample

    from conftest import DET_DEMO, detector_with_detections
    from tools.deployment.export_onnx import main, match_detections
    model = detector_with_detections(DET_DEMO, (128, 128))
    ckpt = tmp_path / 'det.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'det.onnx'
    main([DET_DEMO, str(ckpt), '--out', str(out)] + (['--deploy'] if deploy else []))
    printed = capsys.readouterr().out
    assert ('detection, input (batch, 3, height, width), output boxes, scores, labels'
            in printed)
    assert 'vs mmdet predict (batch 2, 128x128 and 128x160): same detections' in printed
    assert '-> OK' in printed
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert [o.name for o in sess.get_outputs()] == ['boxes', 'scores', 'labels']
    g = torch.Generator().manual_seed(1)
    found = 0
    for n, (h, w) in ((1, (96, 160)), (3, (160, 96))):
        x = torch.randn(n, 3, h, w, generator=g)
        boxes, scores, labels = sess.run(None, {'input': x.numpy()})
        assert boxes.shape == (n, 100, 4) and scores.shape == labels.shape == (n, 100)
        meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
        with torch.no_grad(), fused_shift_max.use_fused(False):
            ref = model.predict(x, [DetDataSample(metainfo=meta) for _ in range(n)],
                                rescale=False)
        for i, sample in enumerate(ref):
            want = sample.pred_instances
            valid = labels[i] >= 0
            found += len(want.scores)
            assert valid.sum() == len(want.scores)
            assert not valid[int(valid.sum()):].any()  # detections first
            assert (np.diff(scores[i][valid]) <= 0).all()  # in decreasing score
            # paired by label, score and box: nearly equal scores may come in another order
            box_err, score_err = match_detections(
                boxes[i], scores[i], labels[i], want.bboxes.numpy(), want.scores.numpy(),
                want.labels.numpy())
            assert score_err <= 1e-4
            assert box_err <= 1e-3 * float(want.bboxes.abs().max())
            assert (scores[i][~valid] == 0).all() and (boxes[i][~valid] == 0).all()
            # boxes in input pixels, inside the image (the coder clips them)
            assert (boxes[i][valid][:, 0::2] <= w).all() and (boxes[i][valid][:, 1::2] <= h).all()
    assert found >= 20  # the comparison is not vacuous


def test_end_to_end_detector_reads_the_coder_and_test_cfg():
    """Non-default coder means and stds and another test_cfg (IoU, max_per_img, score
    threshold) reach the end-to-end detector: it equals mmdet's predict with them (eager)."""
    from mmdet.structures import DetDataSample

    from conftest import DET_DEMO, detector_with_detections
    from micronet_mm.deploy.detection import EndToEndDetector
    from tools.deployment.export_onnx import match_detections
    model = detector_with_detections(DET_DEMO, (128, 128))
    coder = model.bbox_head.bbox_coder
    coder.means, coder.stds = (0.05, -0.05, 0.1, -0.1), (0.5, 0.5, 0.8, 0.8)
    model.bbox_head.test_cfg.update(max_per_img=20, score_thr=0.02,
                                    nms=dict(type='nms', iou_threshold=0.3))
    e2e = EndToEndDetector(model).eval()
    x = torch.randn(2, 3, 128, 160, generator=torch.Generator().manual_seed(2))
    meta = dict(img_shape=(128, 160), ori_shape=(128, 160), scale_factor=(1.0, 1.0))
    with torch.no_grad(), fused_shift_max.use_fused(False):
        boxes, scores, labels = e2e(x)
        ref = model.predict(x, [DetDataSample(metainfo=meta) for _ in range(2)], rescale=False)
    assert boxes.shape == (2, 20, 4)
    for i, sample in enumerate(ref):
        want = sample.pred_instances
        assert len(want.scores) > 0
        errs = match_detections(boxes[i].numpy(), scores[i].numpy(), labels[i].numpy(),
                                want.bboxes.numpy(), want.scores.numpy(), want.labels.numpy())
        assert errs is not None and errs[0] <= 1e-4 and errs[1] <= 1e-6


@pytest.mark.parametrize('deploy', [False, True], ids=['plain', 'deploy'])
def test_end_to_end_detector_in_openvino(tmp_path, deploy):
    """The end-to-end detector's ONNX file (standard operators; with ``--deploy`` the
    ``onnxruntime`` deploy form) read by OpenVINO runs at two sizes and equals mmdet's predict
    (boxes within 1e-3 of the largest coordinate, scores within 1e-4)."""
    ov = pytest.importorskip('openvino')
    from mmdet.structures import DetDataSample

    from conftest import DET_DEMO, detector_with_detections
    from micronet_mm.deploy.detection import EndToEndDetector
    from tools.deployment.export_onnx import export, match_detections
    model = detector_with_detections(DET_DEMO, (128, 128))
    exported = switch_to_deploy(copy.deepcopy(model), 'onnxruntime') if deploy else model
    path = str(tmp_path / 'det.onnx')
    export(EndToEndDetector(exported).eval(), path, (128, 128))
    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), 'CPU',
                                  {'INFERENCE_PRECISION_HINT': 'f32'})
    g = torch.Generator().manual_seed(1)
    found = 0
    for h, w in ((128, 128), (96, 160)):
        x = torch.randn(2, 3, h, w, generator=g)
        meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
        with torch.no_grad(), fused_shift_max.use_fused(False):
            ref = model.predict(x, [DetDataSample(metainfo=meta) for _ in range(2)],
                                rescale=False)
        out = compiled(x.numpy())
        boxes, scores, labels = out[0], out[1], out[2]
        for i, sample in enumerate(ref):
            want = sample.pred_instances
            found += len(want.scores)
            errs = match_detections(boxes[i], scores[i], labels[i], want.bboxes.numpy(),
                                    want.scores.numpy(), want.labels.numpy())
            assert errs is not None, (h, w, i)
            assert errs[0] <= 1e-3 * float(want.bboxes.abs().max()) and errs[1] <= 1e-4
    assert found >= 20

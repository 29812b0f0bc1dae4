"""OpenVINO with the native Shift-Max operation (micronet_mm/csrc/openvino,
micronet_mm/runtime/openvino.py, ``switch_to_deploy(model, 'openvino')``) and
``tools/deployment/export_onnx.py --backend openvino``.

The extension library is built by ``tools/setup_env.sh``; these tests use it as installed (or
``$MICRONET_OPENVINO_EXTENSION``)."""
import copy

import numpy as np
import onnx
import pytest
import torch
from conftest import M0_CONFIG, POSE_DEMO, SEG_DEMO, dense_trained_like, rel_err, trained_like
from torch import nn

from micronet_mm.deploy import switch_to_deploy
from micronet_mm.deploy.rewrites.native_block import NativeProgram
from micronet_mm.deploy.rewrites.native_shift_max import NativeShiftMax
from micronet_mm.errors import UserError
from micronet_mm.ops import DynamicShiftMax
from micronet_mm.runtime import openvino as ovrt

# (C, groups, J, K, dynamic, inner_shift): every kind in the architecture tables (J=2 with K=1
# or 2, dynamic ReLU J=1, static, the paper's pure group shift), on odd shapes below
VARIANTS = [(12, 3, 2, 2, True, True), (30, 5, 2, 1, True, True), (14, 2, 1, 2, True, True),
            (24, 6, 2, 2, False, True), (20, 4, 2, 2, True, False), (9, 1, 2, 2, True, True)]


class _Act(nn.Module):
    """Images (3 channels) -> conv -> Shift-Max -> conv: the node between OpenVINO layers, as in
    the network."""

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__()
        c = dsm.channels
        self.conv1, self.act, self.conv2 = nn.Conv2d(3, c, 3, padding=1), dsm, nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


def _random_dsm(c, groups, j, k, dynamic, inner, seed=0):
    dsm = DynamicShiftMax(c, groups=groups, num_shifts=j, num_fusions=k, squeeze_channels=5,
                          dynamic=dynamic, inner_shift=inner)
    g = torch.Generator().manual_seed(seed)
    for p in dsm.parameters():  # coefficients that vary with the input and across channels
        p.data.normal_(0, 0.5, generator=g)
    return dsm


def _export(model: nn.Module, path, shape) -> list[str]:
    """Export; returns the graph's op types, constants left out."""
    from tools.deployment.export_onnx import export
    export(model, str(path), shape, output_name='y', custom_opsets={'micronet': 1})
    return [n.op_type for n in onnx.load(str(path)).graph.node if n.op_type != 'Constant']


class _Tensor(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x, data_samples=None, mode='tensor'):
        return self.inner(x)


@pytest.mark.parametrize('c, groups, j, k, dynamic, inner', VARIANTS)
def test_native_shift_max_matches_reference(tmp_path, c, groups, j, k, dynamic, inner):
    """One ``micronet.ShiftMax`` node per Shift-Max (and none of the ~10 standard nodes); its
    OpenVINO output equals the PyTorch module's on batch 3, 7x9, in float32."""
    model = _Act(_random_dsm(c, groups, j, k, dynamic, inner)).eval()
    native = copy.deepcopy(model)
    native.act = NativeShiftMax(native.act)
    assert native.act.inner_shift == inner
    path = tmp_path / 'act.onnx'
    assert _export(_Tensor(native), path, (7, 9)) == ['Conv', 'ShiftMax', 'Conv']
    compiled = ovrt.compile_model(str(path))
    x = torch.randn(3, 3, 7, 9)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(native(x), ref)  # in PyTorch the wrapper runs the module as it was
    got = torch.from_numpy(compiled(x.numpy())[0])
    assert rel_err(ref[0], ref[1]) > 0.1
    assert got.shape == ref.shape and rel_err(got, ref) < 1e-5


def test_deploy_openvino_classifier(tmp_path):
    """M0 classifier: the backbone (stem and every stage: it returns its last stage only) and
    the head's two parts (pool + fc1, fc2) become one native program each (their Shift-Max
    activations inside, no BN), which the export merges into ONE ``micronet.Program`` node
    (test_program_chain.py), and OpenVINO runs it to 1e-4 of PyTorch."""
    from tools.deployment.export_onnx import load_classifier
    model = trained_like(load_classifier(M0_CONFIG, None))
    native = switch_to_deploy(copy.deepcopy(model), 'openvino')
    programs = [m for m in native.modules() if isinstance(m, NativeProgram)]
    assert len(programs) == 3  # the backbone and the head's two parts
    assert not any(isinstance(m, NativeShiftMax) for m in native.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in native.modules())
    path = tmp_path / 'm0.onnx'
    ops = _export(native, path, (96, 112))
    assert ops.count('Program') == 1 and 'ShiftMax' not in ops and 'Conv' not in ops
    assert 'Gemm' not in ops and 'GlobalAveragePool' not in ops  # the head: programs
    x = torch.randn(2, 3, 96, 112)
    with torch.no_grad():
        ref = model(x, mode='tensor')
    got = torch.from_numpy(ovrt.compile_model(str(path))(x.numpy())[0])
    assert rel_err(got, ref) < 1e-4


def _ckpt(model: nn.Module, path) -> str:
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


@pytest.mark.parametrize('config, shape, deploy', [
    (M0_CONFIG, (96, 128), True), (M0_CONFIG, (96, 128), False),
    (POSE_DEMO, (64, 48), True), (SEG_DEMO, (128, 256), True)],
    ids=['classifier', 'classifier-plain', 'pose', 'seg'])
def test_export_openvino_parity(tmp_path, capsys, config, shape, deploy):
    """``export_onnx.py --backend openvino`` writes an IR (with ``--deploy``: native Shift-Max
    nodes, and the extension library next to it) that passes the tool's parity check; the IR
    read back in a fresh ``openvino.Core`` with that library agrees again on batch 3."""
    import openvino as ov

    from tools.deployment.export_onnx import load_classifier, main
    model = (trained_like(load_classifier(config, None)) if config == M0_CONFIG
             else dense_trained_like(config, shape))
    out = tmp_path / 'model.xml'
    argv = [config, _ckpt(model, tmp_path / 'model.pth'), '--out', str(out), '--backend',
            'openvino', '--shape', *map(str, shape)]
    if config == POSE_DEMO:  # random-weight pose: the float32 model itself is 4.2e-4 (abs) off
        argv += ['--rtol', '2e-4']  # float64 on these batches, 0.64x the default threshold
    diff = main(argv + (['--deploy'] if deploy else []))
    printed = capsys.readouterr().out
    assert 'OpenVINO vs PyTorch' in printed and '-> OK' in printed
    assert out.is_file() and out.with_suffix('.bin').is_file()
    library = tmp_path / ovrt.LIBRARY_NAME
    assert library.is_file() == deploy
    core = ov.Core()
    if deploy:
        core.add_extension(str(library))
    ir = core.read_model(str(out))
    types = [op.get_type_name() for op in ir.get_ops()]
    native = switch_to_deploy(copy.deepcopy(model), 'openvino')  # what --deploy exports
    n_programs = sum(isinstance(m, NativeProgram) for m in native.modules())
    n_native = sum(isinstance(m, NativeShiftMax) for m in native.modules())  # outside programs
    # the classifier's backbone is one program (it returns its last stage only) and its head
    # two; a dense model's backbone one per stage. The export merges each chain of programs
    # into one node: the classifier's and the pose backbone's (its head reads the last stage
    # only) are one; the seg backbone's two, cut where MR-ASPP reads a stage's output too
    assert n_programs == 3 if config == M0_CONFIG else n_programs >= 4
    merged = {M0_CONFIG: 1, POSE_DEMO: 1, SEG_DEMO: 2}[config]
    assert types.count('Program') == (merged if deploy else 0)
    assert types.count('ShiftMax') == (n_native if deploy else 0)
    assert n_native == (sum(isinstance(m, DynamicShiftMax) for m in model.head.modules())
                        if config == POSE_DEMO else 0)  # the pose head's blocks keep theirs
    compiled = core.compile_model(ir, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    x = torch.randn(3, 3, *shape)
    with torch.no_grad():
        ref = model(x, None, mode='tensor')
    got = torch.from_numpy(compiled(x.numpy())[0])
    rtol = 2e-4 if config == POSE_DEMO else 1e-4
    assert got.shape == ref.shape and diff <= max(1e-4, rtol * float(ref.abs().max()))
    # pose with random weights: softmax attentions amplify float32 rounding (test_deploy)
    assert rel_err(got, ref) < (3e-3 if config == POSE_DEMO else 1e-4)


def test_export_openvino_fails_above_threshold(tmp_path):
    from tools.deployment.export_onnx import load_classifier, main
    ckpt = _ckpt(trained_like(load_classifier(M0_CONFIG, None)), tmp_path / 'm0.pth')
    with pytest.raises(SystemExit) as err:  # no float export is within 0
        main([M0_CONFIG, ckpt, '--out', str(tmp_path / 'a.xml'), '--shape', '64', '64',
              '--deploy', '--backend', 'openvino', '--atol', '0'])
    assert err.value.code == 1


def test_missing_extension_is_one_line(tmp_path, monkeypatch):
    """A native Shift-Max model without the extension library: a UserError naming it."""
    model = _Act(_random_dsm(12, 3, 2, 2, True, True)).eval()
    model.act = NativeShiftMax(model.act)
    path = tmp_path / 'act.onnx'
    _export(_Tensor(model), path, (5, 5))
    monkeypatch.setenv(ovrt.ENV_LIBRARY, str(tmp_path / 'nope.so'))
    with pytest.raises(UserError, match='nope.so'):
        ovrt.compile_model(str(path))


def test_profile_by_type_counts_native_nodes(tmp_path):
    """Per-node profiling (``PERF_COUNT``) sees the native node executed, once per Shift-Max
    (node type ``Reference``: the CPU plugin runs an extension operation through its
    ``evaluate()``, in planar layout)."""
    model = _Act(_random_dsm(16, 4, 2, 2, True, True)).eval()
    model.act = NativeShiftMax(model.act)
    path = tmp_path / 'act.onnx'
    _export(_Tensor(model), path, (8, 8))
    compiled = ovrt.compile_model(str(path), profile=True)
    request = compiled.create_infer_request()
    request.infer({0: np.random.randn(1, 3, 8, 8).astype(np.float32)})
    by_type = ovrt.profile_by_type(request)
    assert by_type['Reference'][1] == 1 and by_type['Reference'][0] >= 0  # evaluate() nodes


@pytest.mark.parametrize('config, shape', [(POSE_DEMO, (64, 48)), (SEG_DEMO, (64, 128))],
                         ids=['pose', 'seg'])
def test_deploy_openvino_exact_in_float64(config, shape):
    """The ``openvino`` deploy model run in PyTorch (programs through ``micronet::program`` in
    float64, native Shift-Max nodes as the trained module, the pose head's last permutation
    folded into its final convolution) equals the model in float64 to 1e-9."""
    model = dense_trained_like(config, shape).double()
    deploy = switch_to_deploy(copy.deepcopy(model), 'openvino')
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    with torch.no_grad():
        ref, out = model(x, None, mode='tensor'), deploy(x, None, mode='tensor')
    assert rel_err(out, ref) < 1e-9
    # the backbone's stages as programs (run by micronet::program here), the pose head's
    # Shift-Max activations as native nodes
    assert sum(isinstance(m, NativeProgram) for m in deploy.modules()) >= 4
    assert any(isinstance(m, NativeShiftMax) for m in deploy.modules()) == (config == POSE_DEMO)


class _Head(nn.Module):
    """A classifier head taking the backbone's last feature map as one tensor."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x):
        return self.head((x,))


@pytest.mark.parametrize('in_channels, mid_channels', [(384, 640), (768, 1024)],
                         ids=['m0', 'm2'])
def test_openvino_head_runs_as_programs(tmp_path, in_channels, mid_channels):
    """The ``openvino`` deploy head is two native programs (pool + fc1, fc2) that equal the
    trained head in float64 to 1e-9, ``pre_logits`` included, over all three pieces of the
    h-swish; OpenVINO runs them as two ``Program`` nodes and no ``FullyConnected``, to 1e-5 of
    PyTorch."""
    from conftest import mmpretrain_scope

    from micronet_mm.deploy.rewrites.native_block import NativeProgram
    from micronet_mm.models.heads.cls_head import MicroNetClsHead
    with mmpretrain_scope():
        head = MicroNetClsHead(num_classes=1000, in_channels=in_channels,
                               mid_channels=mid_channels, dropout=0.1)
    trained_like(head)
    x = torch.randn(2, in_channels, 7, 7)
    with torch.no_grad():
        ref64 = copy.deepcopy(head).double()
        deploy64 = switch_to_deploy(copy.deepcopy(head).double(), 'openvino')
        assert isinstance(deploy64.pool, NativeProgram)
        assert rel_err(deploy64((x.double(),)), ref64((x.double(),))) < 1e-9
        assert rel_err(deploy64.pre_logits((x.double(),)), ref64.pre_logits((x.double(),))) < 1e-9
        logit = ref64.bn2(ref64.fc2(ref64.pre_logits((x.double(),))))  # before the h-swish
        assert (logit < -3).any() and (logit.abs() < 3).any() and (logit > 3).any()
    deploy = switch_to_deploy(copy.deepcopy(head), 'openvino')
    path = str(tmp_path / 'head.onnx')
    with torch.no_grad():
        torch.onnx.export(_Head(deploy), (x[:1],), path, input_names=['input'],
                          output_names=['logits'], opset_version=17, dynamo=False,
                          custom_opsets={'micronet': 1})
        want = deploy((x[:1],)).numpy()
    request = ovrt.compile_model(path, profile=True).create_infer_request()
    got = request.infer({0: x[:1].numpy()})[0]
    assert got.shape == (1, 1000)
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    executed = [i.node_type for i in request.get_profiling_info() if i.status.name == 'EXECUTED']
    assert 'FullyConnected' not in executed and executed.count('Reference') == 2, executed

"""ncnn (converted by pnnx) and MNN run the deploy form of every MicroNet task: the classifiers
M0-M3, the pose model, the v1-m0 MR-ASPP segmentor and the detector's backbone (three outputs).

Each model has trained-like weights: the classifiers the official reference weights with
calibrated BN statistics (tests/reference_state.py), the dense models random weights with BN
statistics set from their inputs (``calibrate``), so that outputs are O(1) and differ from
image to image. Each runtime's outputs are compared with the model as built (eval mode, run in
float64), each output relative to its own largest magnitude. Small inputs keep the suite short.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ARCHS, ROOT, build_classifier, build_from_config, calibrate, trained_like
from micronet_mm.converters import convert_checkpoint
from micronet_mm.deploy import switch_to_deploy
from micronet_mm.deploy.rewrites.four_d import Permute4d
from micronet_mm.errors import UserError
from micronet_mm.ops import ChannelShuffle, shift_index
from micronet_mm.runtime import mnn as mnn_runtime
from micronet_mm.runtime import ncnn as ncnn_runtime
from reference_state import load_official, official_state

pytest.importorskip('ncnn')
pytest.importorskip('pnnx')
pytest.importorskip('MNN')

RUNTIMES = {'ncnn': (ncnn_runtime, '.param'), 'mnn': (mnn_runtime, '.mnn')}
POSE = f'{ROOT}/configs/pose/td-hm_micronet-pose-m0_8xb64-250e_coco-256x192.py'
SEG = f'{ROOT}/configs/seg/micronet-v1-m0-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py'
DET = f'{ROOT}/configs/det/retinanet_micronet_m3.py'
M0 = f'{ROOT}/configs/pretrain/micronet-m0_8xb64_in1k.py'
#: model -> input (H, W): small, but every stage's output at least 2x2
SHAPES = {**{arch: (64, 64) for arch in ARCHS}, 'pose-m0': (64, 48), 'seg-v1-m0': (64, 128),
          'det-backbone': (64, 96)}
#: largest |runtime - PyTorch| / largest |PyTorch| per output (float32 rounding in deep models)
RTOL = 1e-4


class TensorOutputs(nn.Module):
    """``images -> the model's mode='tensor' output`` (a backbone: its tuple of stages)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        if hasattr(self.model, 'data_preprocessor'):
            return self.model(x, None, mode='tensor')
        return self.model(x)


_MODELS: dict[str, nn.Module] = {}


def reference_model(name: str) -> nn.Module:
    """The model ``name`` with trained-like weights (module doc), built once per process."""
    if name in _MODELS:
        return _MODELS[name]
    h, w = SHAPES[name]
    if name in ARCHS:
        record, arrays = load_official()
        _, state = convert_checkpoint(official_state(record, arrays, name))
        model = build_classifier(name)
        model.load_state_dict(state, strict=True)
    elif name == 'det-backbone':
        model = calibrate(trained_like(build_from_config(DET).backbone), (h, w),
                          run=lambda m, x: m(x))
    else:
        model = calibrate(trained_like(build_from_config(POSE if name == 'pose-m0' else SEG)),
                          (h, w))
    _MODELS[name] = TensorOutputs(model.eval()).eval()
    return _MODELS[name]


def outputs(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(x)
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def convert_and_load(model: nn.Module, runtime: str, shape, path) -> object:
    module, ext = RUNTIMES[runtime]
    out = str(path / f'model{ext}')
    module.convert(model, out, shape=(1, 3, *shape))
    return module.load(out)


@pytest.mark.parametrize('runtime', list(RUNTIMES))
@pytest.mark.parametrize('name', list(SHAPES))
def test_deploy_form_runs_in_edge_runtime(tmp_path, name, runtime):
    """The ``switch_to_deploy(model, runtime)`` form, converted, gives the model's outputs on two
    images (every output, in order) at the size it was converted at and at another (ncnn's
    segmentor refuses another size: its upsampling holds the size), and the outputs are not
    degenerate: O(1), and different for the two images by far more than the
    tolerance. The reference is the model in float64; the tolerance is RTOL or, where larger,
    4x the float32 model's own distance from it (random pose weights amplify float32 rounding
    to a few 1e-3: the max of Shift-Max and the attention's clamp switch branches)."""
    model = reference_model(name)
    model64 = copy.deepcopy(model).double()
    h, w = SHAPES[name]
    deployed = switch_to_deploy(copy.deepcopy(model), runtime)
    runner = convert_and_load(deployed, runtime, (h, w), tmp_path)
    g = torch.Generator().manual_seed(1)
    for size in ((h, w), (h + 32, w + 64)):
        x = torch.randn(2, 3, *size, generator=g)
        if size != (h, w) and (name, runtime) == ('seg-v1-m0', 'ncnn'):
            # MR-ASPP upsamples to the stride-8 map's size, which pnnx fixes: refused, not run
            with pytest.raises(UserError, match='converted at that size'):
                runner(x.numpy())
            continue
        want, want32 = outputs(model64, x.double()), outputs(model, x)
        got = runner(x.numpy())
        assert len(got) == len(want) == len(runner.output_names)
        assert len(want) == (3 if name == 'det-backbone' else 1)
        for out, ref, ref32 in zip(got, want, want32):
            scale = float(np.abs(ref).max())
            assert out.shape == ref.shape and 0.05 < scale < 1e4
            tol = max(RTOL, 4 * float(np.abs(ref32 - ref).max()) / scale)
            assert tol < 0.02 and np.abs(ref[0] - ref[1]).max() > 10 * tol * scale
            err = np.abs(out - ref).max() / scale
            assert err <= tol, (name, runtime, size, err, tol)


@pytest.mark.parametrize('name', list(SHAPES))
def test_edge_form_is_exact_in_float64(name):
    """The edge form (eager PyTorch) equals the model as built in float64: every rewrite of
    :mod:`micronet_mm.deploy.rewrites.four_d` is exact, so the runtimes' differences above are
    their own float32 rounding."""
    from micronet_mm.ops import fused_shift_max
    model = copy.deepcopy(reference_model(name)).double()
    x = torch.randn(2, 3, *SHAPES[name], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    with fused_shift_max.use_fused(False):  # the reference code of every Shift-Max
        want = outputs(model, x)
    got = outputs(switch_to_deploy(model, 'ncnn'), x)
    for out, ref in zip(got, want):
        assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()


def test_ncnn_refuses_the_model_as_trained(tmp_path):
    """pnnx leaves the channel gathers of the model as trained (and of the ONNX Runtime deploy
    form) unconverted: one-line UserError naming them and the fix; nothing is written."""
    model = reference_model('m0')
    for form in (model, switch_to_deploy(copy.deepcopy(model), 'onnxruntime')):
        with pytest.raises(UserError, match='pnnx'):
            ncnn_runtime.convert(form, str(tmp_path / 'm.param'), shape=(1, 3, 64, 64))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('kind', ['shuffle', 'shift', 'shift-paper', 'random'])
@pytest.mark.parametrize('channels, groups', [(24, 4), (48, 12), (36, 6)])
def test_permute4d_equals_the_gather(kind, channels, groups):
    """:class:`Permute4d` reproduces ``x[:, index]``: channel shuffles and Shift-Max shifts in
    their grid form (a reshape, a transpose or two rolls; traced with TorchScript, channel
    shuffles and channel rolls), any other permutation as runs."""
    g = torch.Generator().manual_seed(channels + groups)
    if kind == 'shuffle':
        index = ChannelShuffle(groups)(torch.arange(channels).view(1, -1, 1, 1)).view(-1)
    elif kind.startswith('shift'):
        index = shift_index(channels, groups, 1, inner_shift=kind == 'shift')
    else:
        index = torch.randperm(channels, generator=g)
    perm = Permute4d.from_index(index)
    x = torch.randn(2, channels, 3, 5, generator=g)
    assert torch.equal(perm(x), x[:, index])
    assert (perm.runs is None) == (kind != 'random')
    traced = torch.jit.trace(perm, x, check_trace=False)  # the form pnnx converts
    assert torch.equal(traced(x), x[:, index])
    if perm.runs is None:
        assert torch.equal(perm._shuffles_and_rolls(x), x[:, index])


def test_permute4d_of_a_shuffle_needs_no_width():
    """A :class:`ChannelShuffle` becomes a grid form for any width (the ``ncnn`` backend does not
    know the widths of the shuffles it converts)."""
    from micronet_mm.deploy.rewrites.four_d import permute4d
    perm = permute4d(ChannelShuffle(4))
    for c in (8, 12, 20):
        x = torch.randn(1, c, 2, 3)
        assert torch.equal(perm(x), ChannelShuffle(4)(x))


@pytest.mark.parametrize('task, runtime', [('classifier', 'ncnn'), ('classifier', 'mnn'),
                                           ('segmentation', 'ncnn')])
def test_export_tool_checks_parity(tmp_path, capsys, task, runtime):
    """``export_onnx.py --deploy --backend ncnn|mnn`` writes the runtime's files and passes its
    parity check there: at two sizes, except ncnn's segmentor (converted at a fixed size)."""
    from tools.deployment.export_onnx import main
    if task == 'classifier':
        model, config, shape = reference_model('m0').model, M0, ('64', '64')
    else:
        model, config, shape = reference_model('seg-v1-m0').model, SEG, ('64', '128')
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / f'model{RUNTIMES[runtime][1]}'
    main([config, str(ckpt), '--out', str(out), '--backend', runtime, '--deploy', '--shape',
          *shape])
    printed = capsys.readouterr().out
    assert ('MNN' if runtime == 'mnn' else 'ncnn') + ' vs PyTorch' in printed
    sizes = f'{shape[0]}x{shape[1]} and {shape[0]}x{int(shape[1]) + 32}'
    assert (sizes in printed) == (task == 'classifier') and '-> OK' in printed
    assert out.is_file() and (runtime == 'mnn' or out.with_suffix('.bin').is_file())


def test_export_tool_ncnn_needs_deploy(tmp_path):
    """``--backend ncnn`` without ``--deploy``: a user error naming the fix (one line, exit
    status 2, by ``run_cli``), before any file is written."""
    from tools.deployment.export_onnx import main
    with pytest.raises(UserError, match='--backend ncnn needs --deploy'):
        main([M0, str(tmp_path / 'm0.pth'), '--backend', 'ncnn'])
    assert not list(tmp_path.iterdir())

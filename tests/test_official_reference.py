"""Converted official weights give the official outputs, block by block, at 224x224.

The fixture (tests/data/official_reference.{json,npz}) was made by the official code with
calibrated BN statistics (tests/reference_state.py, tools/model_converters/
make_official_fixture.py). Every comparison is relative to the largest magnitude of the tensor
compared: 1e-9 in float64, 1e-5 in float32, for the eager model (every block, the pooled
features, the logits), every deploy backend (every stage and the logits) and the exported ONNX
and OpenVINO files (the logits). A failure names the first output that differs.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import ARCHS, build_classifier
from micronet_mm.converters import convert_checkpoint
from micronet_mm.deploy import switch_to_deploy
from micronet_mm.deploy.backends import native as native_backend
from micronet_mm.models import MicroNet
from micronet_mm.ops import fused_shift_max
from reference_state import compare, load_official, make_input, official_state, recorded

RECORD, ARRAYS = load_official()
RTOL = {torch.float64: 1e-9, torch.float32: 1e-5}
BACKENDS = ['pytorch', 'native', 'native-layers', 'onnxruntime', 'openvino']


def converted_classifier(arch: str) -> torch.nn.Module:
    arch_found, state = convert_checkpoint(official_state(RECORD, ARRAYS, arch))
    assert arch_found == arch
    model = build_classifier(arch)
    model.load_state_dict(state, strict=True)
    return model.eval()


def blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Our modules in the order of the official ``features``: the stem, then every block."""
    backbone = model.backbone
    return [backbone.stem] + [b for stage in backbone.stages for b in stage]


def run_recording(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outs = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=f'features.{i}': outs.__setitem__(name, out))
        for i, m in enumerate(blocks(model))]
    hooks.append(model.head.pool.register_forward_hook(
        lambda mod, inp, out: outs.__setitem__('pool', out.flatten(1))))
    with torch.no_grad():
        outs['logits'] = model(x, mode='tensor')
    for h in hooks:
        h.remove()
    return outs


def stage_ends(arch: str) -> list[str]:
    """Names of the official outputs that our four stages return."""
    backbone = MicroNet(arch)
    ends, count = [], 0
    for stage in backbone.stages:
        count += len(stage)
        ends.append(f'features.{count}')
    return ends


def check_all(outs: dict[str, torch.Tensor], arch: str, rtol: float) -> None:
    """Compare in the official order, so that the first failure is the first block that
    differs."""
    names = [n for n in RECORD[arch]['outputs'] if n in outs]
    for name in names:
        compare(outs[name], recorded(ARRAYS, arch, name), name, rtol)


@pytest.mark.parametrize('arch', ARCHS)
def test_fixture_discriminates(arch):
    """The guard: a fixture whose tensors are too small cannot tell models apart. Every stage's
    features have a standard deviation of at least 0.1 and the logits reach 1 to 10."""
    outputs = RECORD[arch]['outputs']
    for name in stage_ends(arch):
        assert outputs[name]['std'] >= 0.1, (name, outputs[name])
    assert 1.0 <= outputs['logits']['max_abs'] <= 10.0, outputs['logits']
    assert outputs['logits']['std'] >= 0.1
    assert RECORD[arch]['outputs']['logits']['shape'] == [2, 1000]
    assert RECORD[arch]['params'] == sum(p.numel() for p in build_classifier(arch).parameters())


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=['float64', 'float32'])
@pytest.mark.parametrize('arch', ARCHS)
def test_every_block_matches_official(arch, dtype):
    model = converted_classifier(arch).to(dtype)
    outs = run_recording(model, make_input().to(dtype))
    assert len([n for n in outs if n.startswith('features.')]) == len(
        [n for n in RECORD[arch]['outputs'] if n.startswith('features.')])
    check_all(outs, arch, RTOL[dtype])


def test_comparison_fails_without_the_m3_residual():
    """The oracle can fail: M3's stride-1 24 -> 24 Micro-Block-A without its residual (the
    block as it was before the reference rule) differs from the official output at that very
    block, in float32."""
    model = converted_classifier('m3')
    third = blocks(model)[3]
    assert type(third).__name__ == 'MicroBlockA' and third.use_residual
    third.use_residual = False
    outs = run_recording(model, make_input())
    compare(outs['features.2'], recorded(ARRAYS, 'm3', 'features.2'), 'features.2', 1e-5)
    with pytest.raises(AssertionError, match=r'features\.3: differs'):
        check_all(outs, 'm3', 1e-5)


def _deploy(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    model = copy.deepcopy(model)
    if backend == 'native-layers':
        with native_backend.per_layer():
            return switch_to_deploy(model, 'native')
    return switch_to_deploy(model, backend)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=['float64', 'float32'])
@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('arch', ARCHS)
def test_deploy_matches_official(arch, backend, dtype):
    """Deploy mode, every backend as PyTorch runs it (the native programs through the
    ``micronet::program`` op where it is built): the logits of the classifier, and every stage
    of a backbone that returns all four."""
    if backend in ('native', 'openvino') and not fused_shift_max.available():
        pytest.skip('the native operators are not built')
    model = converted_classifier(arch).to(dtype)
    x = make_input().to(dtype)
    deployed = _deploy(model, backend)
    with torch.no_grad():
        logits = deployed(x, mode='tensor')
    compare(logits, recorded(ARRAYS, arch, 'logits'), 'logits', RTOL[dtype])

    backbone = MicroNet(arch, out_indices=(0, 1, 2, 3))
    backbone.load_state_dict(model.backbone.state_dict())
    backbone = _deploy(backbone.to(dtype).eval(), backend)
    with torch.no_grad():
        stages = backbone(x)
    for name, out in zip(stage_ends(arch), stages):
        compare(out, recorded(ARRAYS, arch, name), name, RTOL[dtype])


@pytest.mark.parametrize('form', ['plain-onnxruntime', 'deploy-onnxruntime', 'plain-openvino',
                                  'deploy-openvino'])
@pytest.mark.parametrize('arch', ARCHS)
def test_exported_files_match_official(arch, form, tmp_path):
    """The exported files (as ``tools/deployment/export_onnx.py`` writes them) in their
    runtimes, float32: the logits."""
    from tools.deployment.export_onnx import export, ort_runner
    mode, runtime = form.split('-')
    model = converted_classifier(arch)
    if mode == 'deploy':
        if runtime == 'openvino' and not fused_shift_max.available():
            pytest.skip('the native operators are not built')
        model = switch_to_deploy(copy.deepcopy(model), runtime)
    path = str(tmp_path / 'model.onnx')
    x = make_input().numpy()
    if runtime == 'onnxruntime':
        export(model, path, (224, 224))
        got = ort_runner(path)(x)
    else:
        from micronet_mm.runtime import openvino as ovrt
        export(model, path, (224, 224), custom_opsets={'micronet': 1}, constant_caches=True)
        got = ovrt.compile_model(path)(x)[0]
    compare(torch.from_numpy(np.asarray(got)), recorded(ARRAYS, arch, 'logits'), 'logits',
            RTOL[torch.float32])


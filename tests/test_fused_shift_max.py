"""The fused Dynamic Shift-Max operator (micronet_mm/csrc, micronet_mm/ops/fused_shift_max.py)
against the reference code of micronet_mm/ops/shift_max.py.

The library must be built (tools/setup_env.sh does it); these tests fail, not skip, without it.
"""
import copy
import os
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import ROOT
from torch import nn

from micronet_mm.deploy import FusedShiftMax
from micronet_mm.models.backbones.micronet import MicroNet
from micronet_mm.models.backbones.micronet_archs import ARCH_SETTINGS, POSE_HEAD_SETTINGS
from micronet_mm.ops import DynamicShiftMax, fused_shift_max


def table_settings() -> dict[tuple[int, int, int], int]:
    """Every (J, K, groups) of a Dynamic Shift-Max in the architecture tables (backbones,
    v1 and stride-16 variants, pose backbones and pose heads), with the fewest channels it
    occurs with."""
    from micronet_mm.models.heads.pose_head import build_head_layers
    found = {}
    for arch in ARCH_SETTINGS:
        net = MicroNet(arch)
        mods = list(net.modules())
        if arch in POSE_HEAD_SETTINGS:
            mods += list(build_head_layers(arch, net.out_channels[-1])[0].modules())
        for m in mods:
            if isinstance(m, DynamicShiftMax):
                key = (m.num_shifts, m.num_fusions, m.groups)
                found[key] = min(found.get(key, m.channels), m.channels)
    return found


TABLE = table_settings()
# J = 1 (dynamic ReLU) and J = 3 do not occur in the tables; the operator takes them too. One
# group without inner shift makes the shift the identity (both shifts read one plane)
CASES = sorted(TABLE.items()) + [((1, 2, 4), 8), ((1, 1, 1), 5), ((3, 2, 3), 9), ((2, 2, 1), 6)]
IDS = [f'J{j}-K{k}-G{g}-C{c}' for (j, k, g), c in CASES]


def make_dsm(channels: int, j: int, k: int, g: int, *, dynamic: bool, inner_shift: bool,
             seed: int = 0) -> DynamicShiftMax:
    """A Shift-Max with weights large enough that coefficients vary with the input and the
    fusions' maximum switches between k (the default init keeps them near constant)."""
    m = DynamicShiftMax(channels, groups=g, num_shifts=j, num_fusions=k, squeeze_channels=4,
                        dynamic=dynamic, inner_shift=inner_shift, init_a=(1.0, 0.5, 0.0),
                        init_b=(0.0, 0.5, 1.0))
    gen = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.data.normal_(0, 1, generator=gen)
    return m


def reference(module: nn.Module, *args):
    with fused_shift_max.use_fused(False):
        return module(*args)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_library_is_built():
    """CI builds the operator in tools/setup_env.sh; everything below needs it."""
    assert fused_shift_max.available(), (
        f'{fused_shift_max.library_path()} missing: run bash tools/setup_env.sh')
    assert fused_shift_max.active()


def test_table_settings_cover_the_architectures():
    assert all(j == 2 for j, _, _ in TABLE) and {k for _, k, _ in TABLE} == {1, 2}
    assert len(TABLE) >= 20  # 22 (J, K, G) today


@pytest.mark.parametrize('inner_shift', [True, False], ids=['inner', 'paper'])
@pytest.mark.parametrize('dynamic', [True, False], ids=['dynamic', 'static'])
@pytest.mark.parametrize('setting, channels', CASES, ids=IDS)
def test_fused_module_matches_reference(setting, channels, dynamic, inner_shift):
    """Forward to 1e-6 relative in float32, and every gradient (input and parameters) of the
    module equal to the reference autograd's in float64, on an odd shape with batch 3."""
    j, k, g = setting
    m = make_dsm(channels, j, k, g, dynamic=dynamic, inner_shift=inner_shift)
    x = torch.randn(3, channels, 5, 7)
    with torch.no_grad():
        ref = reference(m, x)
        before = fused_shift_max.calls()
        out = m(x)
    assert fused_shift_max.calls() == before + 1  # the fused path ran
    assert out.shape == ref.shape and rel_err(out, ref) < 1e-6
    if k > 1:  # the maximum picks different fusions at different pixels
        fusions = torch.stack([(m.coefficients(x)[kk] * torch.stack(
            [x[:, idx] for idx in m.index])).sum(0) for kk in range(k)])
        picks = fusions.argmax(0).unique()
        assert len(picks) == k

    md = copy.deepcopy(m).double()
    xd = x.double().requires_grad_()
    grad_out = torch.randn(3, channels, 5, 7, dtype=torch.float64)
    grads = []
    for fused in (True, False):
        md.zero_grad()
        xd.grad = None
        with fused_shift_max.use_fused(fused):
            (md(xd) * grad_out).sum().backward()
        grads.append([xd.grad.clone()] + [p.grad.clone() for p in md.parameters()])
    for a, b in zip(*grads):
        assert (a - b).abs().max() <= 1e-10 * b.abs().max()


@pytest.mark.parametrize('setting, channels', CASES, ids=IDS)
def test_op_gradcheck(setting, channels):
    """``torch.autograd.gradcheck`` (fast mode) of ``micronet::shift_max`` in float64 (input and
    coefficients), with the table's shift index; fewer channels per group (at most 3) keep it
    small."""
    j, k, g = setting
    c = g * min(channels // g, 3)
    m = make_dsm(c, j, k, g, dynamic=True, inner_shift=True)
    x = torch.randn(2, c, 3, 5, dtype=torch.float64, requires_grad=True)
    coef = torch.randn(2, k, j, c, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fused_shift_max.shift_max(a, b, m.index),
                                    (x, coef), eps=1e-6, atol=1e-8, fast_mode=True)


def test_ties_split_the_gradient_as_amax():
    """Equal fusions (a static Shift-Max at its init: both fusions are x) share the gradient
    evenly, as ``torch.amax``'s backward does."""
    m = DynamicShiftMax(8, groups=2, dynamic=False, init_a=(1.0, 1.0), init_b=(0.0, 0.0))
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    m.double()
    grads = []
    for fused in (True, False):
        m.zero_grad()
        with fused_shift_max.use_fused(fused):
            m(x).sum().backward()
        grads.append(m.static_coef.grad.clone())
    assert torch.allclose(*grads, rtol=1e-12, atol=0)
    k0, k1 = grads[0].view(2, 2, 8)
    assert torch.equal(k0, k1)  # tied: each fusion gets half


def test_fused_op_in_the_exported_graph():
    """The training module and the PyTorch deploy form trace to the fused operators."""
    m = make_dsm(24, 2, 2, 4, dynamic=True, inner_shift=True).eval()
    x = torch.randn(2, 24, 5, 7)
    targets = {str(n.target) for n in torch.export.export(m, (x,)).graph.nodes}
    assert 'micronet.shift_max.default' in targets
    deploy = FusedShiftMax(m)
    targets = [str(n.target) for n in torch.export.export(deploy, (x,)).graph.nodes]
    assert targets.count('micronet.shift_max_dynamic.default') == 1
    assert not [t for t in targets if 'aten' in t]  # the hyper-function too: one node


@pytest.mark.parametrize('dynamic', [True, False], ids=['dynamic', 'static'])
def test_deploy_form_float64_exact(dynamic):
    m = make_dsm(48, 2, 2, 12, dynamic=dynamic, inner_shift=True).double().eval()
    x = torch.randn(3, 48, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(FusedShiftMax(m)(x), reference(m, x)) < 1e-12


def test_missing_library_falls_back_with_one_warning(monkeypatch):
    """Without the built library, the reference code runs and ONE warning names the fix."""
    monkeypatch.setitem(fused_shift_max._state, 'loaded', False)  # as if the .so were absent
    monkeypatch.setitem(fused_shift_max._state, 'warned', False)
    m = make_dsm(12, 2, 2, 4, dynamic=True, inner_shift=True)
    x = torch.randn(2, 12, 5, 5)
    before = fused_shift_max.calls()
    with pytest.warns(UserWarning, match='not built.*tools/setup_env.sh') as record:
        out = m(x)
        m(x)
        from micronet_mm.deploy.rewrites.shift_max import FastShiftMax, pytorch_shift_max
        assert isinstance(pytorch_shift_max(m), FastShiftMax)
    assert len([w for w in record if 'fused Dynamic Shift-Max' in str(w.message)]) == 1
    assert fused_shift_max.calls() == before
    with fused_shift_max.use_fused(False):
        assert torch.equal(out, m(x))


def test_switches():
    m = make_dsm(12, 2, 1, 4, dynamic=True, inner_shift=True)
    x = torch.randn(1, 12, 3, 3)
    before = fused_shift_max.calls()
    with fused_shift_max.use_fused(False), warnings.catch_warnings():
        warnings.simplefilter('error')
        m(x)
        assert not fused_shift_max.active()
    assert fused_shift_max.calls() == before
    m(x)
    assert fused_shift_max.calls() == before + 1
    # another dtype than float32 / float64 takes the reference path
    m.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert fused_shift_max.calls() == before + 1
    # the environment switch, read at import
    code = ('from micronet_mm.ops import fused_shift_max as f; '
            'print(f.active(), f.available())')
    env = dict(os.environ, MICRONET_FUSED_SHIFT_MAX='0', PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split()
    assert out == ['False', 'True']


def test_build_finds_the_cached_library(capsys):
    """``python -m micronet_mm.csrc.build`` (what tools/setup_env.sh runs) builds nothing when
    the library for these sources, this torch and this Python is cached; the key changes with
    the sources."""
    from micronet_mm.csrc import build
    assert build.main([]) == fused_shift_max.library_path()
    assert capsys.readouterr().out.startswith('fused Shift-Max op: cached, ')
    key = build.library_path().parent.name
    assert torch.__version__ in key and f'cp{sys.version_info[0]}{sys.version_info[1]}' in key


def small_model() -> nn.Module:
    """Convolution + Dynamic Shift-Max (K=2) + convolution + static Shift-Max (K=1)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1),
                         make_dsm(24, 2, 2, 4, dynamic=True, inner_shift=True),
                         nn.Conv2d(24, 16, 1),
                         make_dsm(16, 2, 1, 8, dynamic=False, inner_shift=True))


def test_torch_compile():
    """``torch.compile``: the deploy form under inductor (default mode) matches eager; a training
    step through AOTAutograd (``aot_eager``: the operator's autograd formula and fake kernels,
    no code generation, which takes minutes on 2 cores) matches eager gradients."""
    from micronet_mm.deploy import switch_to_deploy
    model = small_model()
    x = torch.randn(2, 3, 9, 11)
    deploy = switch_to_deploy(copy.deepcopy(model), 'native')
    with torch.no_grad():
        assert rel_err(torch.compile(deploy)(x), reference(model.eval(), x)) < 1e-6
    model.train()
    compiled = torch.compile(copy.deepcopy(model), backend='aot_eager')
    results = []
    for m in (model, compiled):
        before = fused_shift_max.calls()
        out = m(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), [p.grad for p in m.parameters()]))
        assert fused_shift_max.calls() > before  # traced (compiled) or run (eager)
    (out_e, g_e), (out_c, g_c) = results
    assert rel_err(out_c, out_e) < 1e-6
    for a, b in zip(g_c, g_e):
        assert rel_err(a, b) < 1e-5


def test_export_and_aot_inductor_deploy(tmp_path):
    """The native PyTorch deploy form through ``torch.export`` and AOTInductor: one fused node per
    Shift-Max in the exported graph, and the compiled package matches eager."""
    from micronet_mm.deploy import switch_to_deploy
    model = small_model().eval()
    deploy = switch_to_deploy(copy.deepcopy(model), 'native')
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        ref = reference(model, x)
        ep = torch.export.export(deploy, (x,))
        targets = [str(n.target) for n in ep.graph.nodes]
        assert targets.count('micronet.shift_max_dynamic.default') == 1
        assert targets.count('micronet.shift_max.default') == 1
        assert rel_err(ep.module()(x), ref) < 1e-6
        path = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / 'm.pt2'))
        compiled = torch._inductor.aoti_load_package(path)
        assert rel_err(compiled(x), ref) < 1e-6


SHIM = r'''
#include "shift_max.h"
extern "C" {
void forward(const double* x, const double* coef, double* y, int64_t N, int64_t C, int64_t H,
             int64_t W, int64_t G, int64_t J, int64_t K, int inner) {
  micronet::shift_max_fuse_forward(x, coef, y, {N, C, H, W, G, J, K, inner != 0});
}
void backward(const double* x, const double* coef, const double* gy, double* gx, double* gc,
              int64_t N, int64_t C, int64_t H, int64_t W, int64_t G, int64_t J, int64_t K,
              int inner) {
  micronet::shift_max_fuse_backward(x, coef, gy, gx, gc, {N, C, H, W, G, J, K, inner != 0});
}
}
'''


@pytest.fixture(scope='module')
def header_lib(tmp_path_factory):
    """The header compiled alone (no torch) behind a C shim, loaded with ctypes."""
    import ctypes
    tmp = tmp_path_factory.mktemp('header')
    (tmp / 'shim.cpp').write_text(SHIM)
    subprocess.run(['c++', '-std=c++17', '-O2', '-fopenmp-simd', '-shared', '-fPIC',
                    f'-I{ROOT}/micronet_mm/csrc', str(tmp / 'shim.cpp'), '-o',
                    str(tmp / 'shim.so')], check=True)
    return ctypes.CDLL(str(tmp / 'shim.so'))


@pytest.mark.parametrize('setting, channels', [((2, 2, 12), 48), ((2, 1, 4), 12), ((2, 2, 1), 6),
                                                ((3, 2, 3), 9), ((1, 2, 4), 8)],
                         ids=['J2-K2-G12', 'J2-K1-G4', 'J2-K2-G1', 'J3-K2-G3', 'J1-K2-G4'])
def test_header_shift_arithmetic(header_lib, setting, channels):
    """The header without torch, as the OpenVINO extension uses it: the shift computed from
    groups and inner_shift (no index table) gives what the torch operator gives from
    ``DynamicShiftMax.index``, forward and backward, both shift conventions."""
    import ctypes
    assert fused_shift_max.available()  # the torch operator to compare with
    lib = header_lib
    j, k, g = setting
    n, h, w = 2, 3, 5
    ptr = ctypes.POINTER(ctypes.c_double)
    for inner in (True, False):
        m = make_dsm(channels, j, k, g, dynamic=True, inner_shift=inner)
        x = torch.randn(n, channels, h, w, dtype=torch.float64)
        coef = torch.randn(n, k, j, channels, dtype=torch.float64)
        gy = torch.randn(n, channels, h, w, dtype=torch.float64)
        y, gx, gc = torch.empty_like(x), torch.empty_like(x), torch.empty_like(coef)
        sizes = [ctypes.c_int64(v) for v in (n, channels, h, w, g, j, k)] + [ctypes.c_int(inner)]
        p = [t.data_ptr() for t in (x, coef, y, gy, gx, gc)]
        lib.forward(*[ctypes.cast(v, ptr) for v in p[:3]], *sizes)
        lib.backward(*[ctypes.cast(v, ptr) for v in (p[0], p[1], p[3], p[4], p[5])], *sizes)
        assert torch.equal(y, torch.ops.micronet.shift_max(x, coef, m.index))
        ref_gx, ref_gc = torch.ops.micronet.shift_max_backward(gy, x, coef, m.index)
        assert torch.allclose(gx, ref_gx, rtol=1e-12, atol=1e-12)
        assert torch.allclose(gc, ref_gc, rtol=1e-12, atol=1e-12)


def test_bench_shift_max_smoke(capsys):
    """tools/analysis/bench_shift_max.py (docs/deploy.md) on a tiny input: every
    form and the whole-classifier rows are measured (training steps in subprocesses are left to
    the real run)."""
    from tools.analysis.bench_shift_max import main
    med = main(['--arch', 'm0', '--shape', '32', '32', '--rounds', '1', '--iters', '1',
                '--train', '--latency'])
    assert {'reference', 'deploy FastShiftMax', 'deploy FusedShiftMax', 'fused module',
            'fusion only', 'train reference', 'train fused', 'm2 deploy FusedShiftMax ms',
            'm2 deploy programs ms', 'mnv3-s-050 eager ms'} <= set(med)
    assert all(v > 0 for v in med.values())
    assert '| deploy FusedShiftMax |' in capsys.readouterr().out

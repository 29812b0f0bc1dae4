"""Mixed precision and ``torch.compile`` of Dynamic Shift-Max and of whole models, and the
choice between the fused C++ operator and the reference code (CPU float32 / float64 only: a
CUDA, half-precision or other-device tensor never reaches the C++ kernels)."""
import copy

import pytest
import torch
from conftest import ARCHS, randomize_bn
from torch import nn

from micronet_mm.deploy import FusedShiftMax
from micronet_mm.models.backbones.micronet import MicroNet
from micronet_mm.ops import DynamicShiftMax, fused_shift_max


def make_dsm(channels: int = 24, groups: int = 4, k: int = 2, seed: int = 0) -> DynamicShiftMax:
    """A Shift-Max whose coefficients vary with the input (weights larger than at init)."""
    m = DynamicShiftMax(channels, groups=groups, num_fusions=k, squeeze_channels=8,
                        init_a=(1.0, 0.5), init_b=(0.0, 0.5))
    g = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.data.normal_(0, 0.5, generator=g)
    return m


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


# ------------------------------------------------------------------------ mixed precision
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_coefficients_float32_under_autocast(dtype):
    """Under autocast the hyper-function runs in float32: the coefficients from a bf16 / fp16
    input equal those of the same (rounded) input in float32 up to float32 rounding."""
    m = make_dsm()
    x = torch.randn(4, 24, 6, 6).to(dtype)
    with torch.autocast('cpu', dtype=dtype):
        a = m.coefficients(x)
    assert a.dtype == torch.float32
    want = m.coefficients(x.float())
    assert rel_err(a, want) < 1e-5


@pytest.mark.parametrize('k', [1, 2])
def test_shift_max_under_bf16_autocast_close_to_float32(k):
    m = make_dsm(k=k)
    x = torch.randn(4, 24, 6, 6) * 3
    want = m(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = m(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16  # the activation's dtype, no float32 intermediate out
    assert torch.isfinite(got).all()
    assert rel_err(got, want) < 2e-2  # bfloat16 has 8 bits of mantissa


@pytest.mark.parametrize('arch', ['m0', 'm3'])
def test_model_under_bf16_autocast(arch):
    """A whole backbone under CPU bf16 autocast: in eval mode (trained-like BN statistics)
    close to float32; a training step with finite outputs and gradients."""
    torch.manual_seed(0)
    model = MicroNet(arch)
    randomize_bn(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model.eval()(x)[0]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = model(x)[0]
    assert rel_err(got, want) < 0.05
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(x)[0]
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------ choice of kernel
def test_choice_by_device_and_dtype(monkeypatch):
    """CPU float32 / float64 take the fused operator; bf16, fp16 and a non-CPU device take
    the reference code, each noted once, and the C++ kernel is never called with them."""
    notes = []
    monkeypatch.setattr(fused_shift_max, 'print_log', lambda msg, **kw: notes.append(msg))
    monkeypatch.setitem(fused_shift_max._state, 'noted', set())
    assert fused_shift_max.choose(torch.zeros(1)) == 'fused'
    assert fused_shift_max.choose(torch.zeros(1, dtype=torch.float64)) == 'fused'
    with fused_shift_max.use_fused(False):
        assert fused_shift_max.choose(torch.zeros(1)) == 'reference'
    for x in (torch.zeros(1, dtype=torch.bfloat16), torch.zeros(1, dtype=torch.float16),
              torch.zeros(1, device='meta'), torch.zeros(1, device='meta')):
        assert fused_shift_max.choose(x) == 'reference'
    assert len(notes) == 3  # bfloat16, float16, meta: once each
    assert 'on meta' in notes[2] and 'torch.compile' in notes[2]

    def refuse(*args, **kwargs):
        raise AssertionError('a CPU-only kernel was handed a non-CPU tensor')

    monkeypatch.setattr(torch.ops.micronet, 'shift_max', refuse, raising=False)
    monkeypatch.setattr(fused_shift_max, 'shift_max', refuse)
    monkeypatch.setattr(fused_shift_max, 'shift_max_dynamic', refuse)
    m = make_dsm()
    deploy = FusedShiftMax(m.eval())
    # 'meta' stands for any device the C++ kernels do not take (CUDA on a GPU machine)
    x = torch.randn(2, 24, 5, 5, device='meta')
    assert m.to('meta')(x).shape == x.shape
    assert deploy.to('meta')(x).shape == x.shape


def test_fused_deploy_form_falls_back_with_the_same_result():
    """FusedShiftMax on an input the operator does not take (here bf16) runs the same formula
    in standard ops."""
    m = make_dsm().eval()
    x = torch.randn(2, 24, 5, 5)
    deploy = FusedShiftMax(m)
    with torch.no_grad():
        want = m(x)
        assert rel_err(deploy(x), want) < 1e-6  # the C++ operator
        got = deploy.to(torch.float64)(x.to(torch.float64))
        assert rel_err(got, want) < 1e-6
        assert rel_err(deploy.to(torch.bfloat16)(x.to(torch.bfloat16)), want) < 2e-2


# ------------------------------------------------------------------------ torch.compile
def train_step(model: nn.Module, x: torch.Tensor):
    out = model(x)
    out = out[-1] if isinstance(out, tuple) else out
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize('fused', [False, True], ids=['reference', 'fused'])
def test_shift_max_compiles_with_inductor_and_trains(fused):
    """The Shift-Max module under Inductor (the reference code as generated kernels, or the
    fused operator as one node) gives eager's outputs and gradients."""
    m = make_dsm().train()
    x = torch.randn(3, 24, 7, 9, requires_grad=True)
    with fused_shift_max.use_fused(fused):
        out_e, g_e = train_step(m, x)
        gx_e = x.grad.clone()
        x.grad = None
        compiled = torch.compile(copy.deepcopy(m), backend='inductor')
        out_c, g_c = train_step(compiled, x)
    assert rel_err(out_c, out_e) < 1e-5
    assert rel_err(x.grad, gx_e) < 1e-4
    for a, b in zip(g_c, g_e):
        assert rel_err(a, b) < 1e-4


@pytest.mark.parametrize('arch', ARCHS)
def test_whole_model_compiles_and_trains(arch):
    """``torch.compile`` of a whole backbone in training, with the reference Shift-Max (the form
    a GPU compiles): one step gives eager's outputs, gradients and BN statistics. The backend is
    ``aot_eager_decomp_partition``: Inductor's graph capture, decompositions and min-cut
    forward/backward partition, run without the C++ code generation (minutes per model on a
    small CPU; the Shift-Max module goes through Inductor's code generation above)."""
    torch.manual_seed(0)
    model = MicroNet(arch).train()
    compiled_model = copy.deepcopy(model)
    x = torch.randn(2, 3, 64, 64)
    with fused_shift_max.use_fused(False):
        out_e, g_e = train_step(model, x)
        compiled = torch.compile(compiled_model, backend='aot_eager_decomp_partition')
        out_c, g_c = train_step(compiled, x)
    assert rel_err(out_c, out_e) < 1e-4
    # gradients relative to the largest one: some are sums that cancel to ~0 (a BN bias before
    # a batch-normalized convolution), where only rounding is left
    scale = max(g.abs().max() for g in g_e)
    for a, b in zip(g_c, g_e):
        assert (a - b).abs().max() <= 1e-4 * scale
    for a, b in zip(compiled_model.buffers(), model.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6)

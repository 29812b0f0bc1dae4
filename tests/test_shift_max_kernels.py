"""Dynamic Shift-Max's native kernel family (micronet_mm/csrc/shift_max_kernels.h) against the
readable reference (micronet_mm/ops/shift_max.py), through every front end that runs it: the
torch ops ``micronet::shift_max`` / ``shift_max_backward`` / ``shift_max_dynamic`` and the
programs' SHIFT_MAX layer (planar, and applied inside the interleaving pass of the depthwise
layer after it). Every float32 case runs at both vector widths of the engine (8 and 16 lanes,
MICRONET_PROGRAM_VECTOR_BYTES), float64 at its one width; random shift tables, J and K from 1
to 8, groups, odd and tiny planes. The OpenVINO node runs the same kernels
(tests/test_openvino.py)."""
import pytest
import torch
from conftest import WIDTH_IDS, WIDTHS
from torch import nn

from micronet_mm.deploy.rewrites.native_block import Value, _Compiler
from micronet_mm.ops import DynamicShiftMax, fused_shift_max
from micronet_mm.ops.shift_max import shift_index, shift_max_reference

# (J, K, groups, C, H, W, N): every J, K <= 2 path, the generic paths up to J = K = 8, planes
# of one pixel, one row, odd sizes, and a plane longer than the generic paths' chunk of 64
CASES = [(2, 2, 4, 8, 7, 7, 2), (2, 2, 1, 6, 1, 1, 3), (2, 1, 3, 9, 1, 3, 1),
         (1, 2, 2, 4, 5, 13, 2), (1, 1, 1, 5, 2, 2, 1), (3, 2, 3, 9, 3, 5, 2),
         (2, 3, 2, 6, 9, 17, 1), (8, 8, 8, 16, 3, 3, 1), (4, 1, 2, 12, 11, 11, 2),
         (1, 8, 1, 3, 1, 1, 2), (2, 2, 12, 48, 14, 14, 1)]
CASE_IDS = ['J{}-K{}-G{}-C{}-{}x{}-N{}'.format(*c) for c in CASES]
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


@pytest.fixture(autouse=True, scope='module')
def _library():
    assert fused_shift_max.available(), 'not built: python -m micronet_mm.csrc.build'


def shift_table(j: int, c: int, groups: int, seed: int) -> torch.Tensor:
    """A (J, C) table: row 0 the identity (as every table the deploy rewrites make), the others
    the group shift for even seeds, else random channels (repeats allowed)."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.arange(c)]
    for s in range(1, j):
        rows.append(shift_index(c, groups, s) if seed % 2 == 0
                    else torch.randint(0, c, (c,), generator=gen))
    return torch.stack(rows)


def check_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = float(want.abs().max()) + 1e-30
    assert float((got - want).abs().max()) <= TOL[dtype] * scale


def random_module(j: int, k: int, groups: int, c: int, dtype: torch.dtype, dynamic: bool,
                  seed: int) -> DynamicShiftMax:
    """A Shift-Max whose coefficients vary with the input and whose maximum picks different
    fusions at different pixels (the default init keeps them near constant)."""
    m = DynamicShiftMax(c, groups=groups, num_shifts=j, num_fusions=k, squeeze_channels=5,
                        dynamic=dynamic, init_a=[1.0, 0.5, 0.0] * 3, init_b=[0.0, 0.5, 1.0] * 3)
    gen = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.data.normal_(0, 1, generator=gen)
    return m.to(dtype).eval()


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
@pytest.mark.parametrize('dtype, vector_bytes', WIDTHS, ids=WIDTH_IDS)
@pytest.mark.parametrize('seed', [0, 1], ids=['shift', 'random-table'])
def test_op_forward_and_backward(width, dtype, vector_bytes, case, seed):
    """``micronet::shift_max`` equals Eq. 4 in standard ops, and ``shift_max_backward`` the
    reference's autograd (in float64: float32 to its rounding)."""
    width(vector_bytes)
    j, k, groups, c, h, w, n = case
    gen = torch.Generator().manual_seed(seed)
    index = shift_table(j, c, groups, seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    coef = torch.randn(n, k, j, c, generator=gen, dtype=torch.float64)
    gy = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    xr, cr = x.clone().requires_grad_(), coef.clone().requires_grad_()
    want = shift_max_reference(xr, cr.permute(1, 2, 0, 3)[..., None, None], index)
    want_gx, want_gc = torch.autograd.grad(want, (xr, cr), gy)
    got = torch.ops.micronet.shift_max(x.to(dtype), coef.to(dtype), index)
    check_close(got, want.detach().to(dtype), dtype)
    gx, gc = torch.ops.micronet.shift_max_backward(gy.to(dtype), x.to(dtype), coef.to(dtype),
                                                   index)
    check_close(gx, want_gx.to(dtype), dtype)
    check_close(gc, want_gc.to(dtype), dtype)


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
@pytest.mark.parametrize('dtype, vector_bytes', WIDTHS, ids=WIDTH_IDS)
def test_op_with_hyper_function(width, dtype, vector_bytes, case):
    """``micronet::shift_max_dynamic`` (hyper-function with fc2 as stored in the module, then
    Eq. 4) equals :class:`DynamicShiftMax`'s reference code."""
    width(vector_bytes)
    j, k, groups, c, h, w, n = case
    m = random_module(j, k, groups, c, dtype, True, seed=j * 10 + k)
    x = torch.randn(n, c, h, w, dtype=dtype)
    with torch.no_grad(), fused_shift_max.use_fused(False):
        want = m(x)
    fc1, fc2 = m.fc[0], m.fc[2]
    got = torch.ops.micronet.shift_max_dynamic(
        x, fc1.weight.detach(), fc1.bias.detach(), fc2.weight.detach(), fc2.bias.detach(),
        m.init.view(k, j), m.act_max, m.index)
    check_close(got, want, dtype)


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
@pytest.mark.parametrize('dtype, vector_bytes', WIDTHS, ids=WIDTH_IDS)
@pytest.mark.parametrize('dynamic', [True, False], ids=['dynamic', 'static'])
def test_program_layer(width, dtype, vector_bytes, case, dynamic):
    """A program's SHIFT_MAX layer (hyper-function with fc2 blocked, or static coefficients),
    alone, equals the reference; with a random shift table too."""
    width(vector_bytes)
    j, k, groups, c, h, w, n = case
    m = random_module(j, k, groups, c, dtype, dynamic, seed=j * 10 + k + 1)
    m.index = shift_table(j, c, groups, seed=1)
    x = torch.randn(n, c, h, w, dtype=dtype)
    with torch.no_grad(), fused_shift_max.use_fused(False):
        want = m(x)
    compiler = _Compiler()
    out = compiler.shift_max(Value(0, c), m)
    program, weights, tables = compiler.b.finish(out, dtype)
    check_close(torch.ops.micronet.program(x, weights, tables, program), want, dtype)


# (J, K, groups, C, H, W, kh, kw): Shift-Max, then a depthwise layer that takes the interleaved
# path (C a multiple of 16 lanes, a plane of at most 1024 pixels), which computes the Shift-Max
# output as it interleaves its input
INTO = [(2, 2, 4, 32, 7, 7, 3, 1), (2, 1, 8, 16, 14, 14, 1, 5), (1, 2, 2, 16, 5, 9, 3, 3),
        (1, 1, 1, 32, 1, 1, 1, 1), (2, 2, 16, 48, 3, 11, 1, 3)]


@pytest.mark.parametrize('case', INTO, ids=['J{}-K{}-G{}-C{}-{}x{}-{}x{}'.format(*c)
                                            for c in INTO])
@pytest.mark.parametrize('dtype, vector_bytes', WIDTHS, ids=WIDTH_IDS)
@pytest.mark.parametrize('dynamic', [True, False], ids=['dynamic', 'static'])
def test_program_layer_inside_depthwise(width, dtype, vector_bytes, case, dynamic):
    """SHIFT_MAX applied inside the next depthwise layer's interleaving pass (its output never
    written) equals the reference Shift-Max followed by the convolution."""
    width(vector_bytes)
    j, k, groups, c, h, w, kh, kw = case
    m = random_module(j, k, groups, c, dtype, dynamic, seed=c + j + k)
    conv = nn.Conv2d(c, c, (kh, kw), padding=(kh // 2, kw // 2), groups=c).to(dtype)
    x = torch.randn(2, c, h, w, dtype=dtype)
    with torch.no_grad(), fused_shift_max.use_fused(False):
        want = conv(m(x))
    compiler = _Compiler()
    out = compiler.conv(compiler.shift_max(Value(0, c), m), conv, None)
    program, weights, tables = compiler.b.finish(out, dtype)
    check_close(torch.ops.micronet.program(x, weights, tables, program), want, dtype)


"""Whole Micro-Blocks as one native call: the layer program of micronet_mm/csrc/program.h, its
torch.library op ``micronet::program`` and the compiler of trained modules
(micronet_mm/deploy/rewrites/native_block.py). The op is built by tools/setup_env.sh, with the
fused Shift-Max operator, into one library."""
import copy

import pytest
import torch
from conftest import WIDTH_IDS, WIDTHS, calibrate, rel_err, trained_like
from torch import nn

from micronet_mm.csrc.program_format import program_of, records
from micronet_mm.deploy.rewrites.native_block import (HeadPart, NativeProgram, Unsupported,
                                                      _in_channels, compile_program,
                                                      convert_programs, output_shape)
from micronet_mm.models import MicroNet
from micronet_mm.ops import DynamicShiftMax, SpatialAttention, fused_shift_max
from micronet_mm.ops.blocks import ActSettings, BlockSpec, MicroBlockA, MicroBlockC
from micronet_mm.ops.shift_max import HSwish
from micronet_mm.ops.stem import MicroStem


@pytest.fixture(autouse=True, scope='module')
def _library():
    """The tests call ``torch.ops.micronet.program`` directly: the library must be built
    (tools/setup_env.sh) and loaded, also when a test runs alone."""
    assert fused_shift_max.available(), 'not built: python -m micronet_mm.csrc.build'


def test_vector_width(width):
    """The kernels run 16 floats per vector on AVX-512 hosts and 8 elsewhere (8 doubles
    everywhere); MICRONET_PROGRAM_VECTOR_BYTES overrides the float32 width (the tests above)."""
    with open('/proc/cpuinfo') as f:
        avx512 = ' avx512f' in f.read()
    width(None)
    assert torch.ops.micronet.program_vector_bytes(False) == (64 if avx512 else 32)
    assert torch.ops.micronet.program_vector_bytes(True) == 64
    for vector_bytes in ('32', '64'):
        width(vector_bytes)
        assert torch.ops.micronet.program_vector_bytes(False) == int(vector_bytes)
        assert torch.ops.micronet.program_vector_bytes(True) == 64


def _programs(backbone: MicroNet, dtype: torch.dtype) -> list[NativeProgram]:
    return [NativeProgram(m, _in_channels(m), dtype) for m in [backbone.stem, *backbone.stages]]


def _static_coefficients(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, DynamicShiftMax) and m.fc is None:
            m.static_coef.data.uniform_(-0.5, 1.5)  # outside [0, 1]: no clamp may apply


@pytest.mark.parametrize('arch, kwargs', [
    ('m0', {}), ('m1', {}), ('m2', {}), ('m3', {}), ('v1-m2', {}), ('v1-m3', {}),
    ('m1', dict(output_stride=16)), ('m2', dict(output_stride=8)),
    ('m1', dict(act_cfg=dict(dynamic=False))), ('m0', dict(full_rank=True))],
    ids=['m0', 'm1', 'm2', 'm3', 'v1-m2', 'v1-m3', 'm1-os16', 'm2-os8', 'm1-static',
         'm0-full-rank'])
def test_program_matches_backbone(arch, kwargs, width):
    """The stem and every stage as one program each equal the trained modules (the reference
    Shift-Max code) on batch 2 of an odd, non-square size: float64 to 1e-9 relative (the
    compilation is exact), float32 at both vector widths to 1e-4 (or 8x the model's own
    float32 error)."""
    model = trained_like(MicroNet(arch, out_indices=(0, 1, 2, 3), **kwargs))
    _static_coefficients(model)
    calibrate(model, (75, 97), run=lambda m, x: m(x))
    x = torch.randn(2, 3, 75, 97)
    outs, refs = {}, {}
    for dtype, vector_bytes in WIDTHS:
        width(vector_bytes)
        m = copy.deepcopy(model).to(dtype)
        programs = _programs(m, dtype)
        calls = fused_shift_max.calls()
        with torch.no_grad(), fused_shift_max.use_fused(False):
            refs[dtype] = m(x.to(dtype))
            y, outs[vector_bytes] = programs[0](x.to(dtype)), []
            for p in programs[1:]:
                y = p(y)
                outs[vector_bytes].append(y)
        assert fused_shift_max.calls() == calls  # the reference ran, not the fused operator
    for o64, r64, o16, o8, r32 in zip(outs[None], refs[torch.float64], outs['64'], outs['32'],
                                      refs[torch.float32]):
        assert o64.shape == r64.shape == o16.shape == o8.shape
        assert rel_err(o64, r64) < 1e-9
        # float32: 1e-4 from the float64 truth, unless the trained model's own float32 rounding
        # is larger (deep random models amplify rounding, test_deploy; the program's is 1-12x
        # the trained modules' in these runs: it rounds in a different order, and v1-m2's last
        # stage reaches magnitudes of 800 here). The float64 check above is the exactness check.
        for o32 in (o16, o8):
            assert rel_err(o32, r64) < max(1e-4, 16 * rel_err(r32, r64))
    assert rel_err(r64[0], r64[1]) > 0.1  # the output depends on the image


def _block(kind, kernel, stride, dilation, c_in=8):
    act = ActSettings()
    if kind == 'A':
        spec = BlockSpec('A', kernel, stride, (2, 2), 12, (0, 4), (4, 4), (2, 2, 1), 1,
                         dilation=dilation)
        return MicroBlockA(c_in, spec, act)
    spec = BlockSpec('C', kernel, stride, (1, 4), c_in, (2, 4), (2, 4), (2, 1, 2), 1,
                     dilation=dilation)
    return MicroBlockC(c_in, spec, act)


@pytest.mark.parametrize('kind', ['A', 'C'])
@pytest.mark.parametrize('kernel, stride, dilation', [(3, 1, 1), (3, 2, 1), (5, 1, 1),
                                                      (5, 2, 1), (7, 1, 2), (3, 1, 3)])
@pytest.mark.parametrize('shape', [(3, 5), (9, 14), (31, 33), (40, 56)],
                         ids=['tiny', 'small', 'odd', 'large'])
@pytest.mark.parametrize('dtype, vector_bytes', WIDTHS, ids=WIDTH_IDS)
def test_program_block_kernels(kind, kernel, stride, dilation, shape, dtype, vector_bytes,
                               width):
    """Every code path of the convolution kernels: planes shorter than one vector (scalar),
    small planes (the zero-margined copy), large planes (rows / flat loops), odd widths with a
    horizontal stride of 2, dilations and kernels 3, 5, 7; Micro-Block-A's channel multipliers
    and Micro-Block-C's residual, at every vector width. float64 to 1e-10, float32 to 1e-5 of
    the float64 module."""
    width(vector_bytes)
    block = trained_like(_block(kind, kernel, stride, dilation)).double()
    program, weights, tables = compile_program(block, 8, dtype)
    x = torch.randn(2, 8, *shape, dtype=torch.float64)
    with torch.no_grad(), fused_shift_max.use_fused(False):
        ref = block(x)
    out = torch.ops.micronet.program(x.to(dtype), weights, tables, program)
    assert tuple(out.shape) == output_shape(program, tuple(x.shape)) == tuple(ref.shape)
    assert rel_err(out.double(), ref) < (1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize('mid, multiplier', [(1, 1), (3, 2), (4, 3), (5, 2), (6, 4)])
@pytest.mark.parametrize('stride, kernel', [(2, 3), (1, 3), (2, 5)])
@pytest.mark.parametrize('shape', [(9, 7), (17, 40), (48, 70)], ids=['narrow', 'mid', 'wide'])
@pytest.mark.parametrize('dtype, vector_bytes', WIDTHS, ids=WIDTH_IDS)
def test_program_stem_kernels(mid, multiplier, stride, kernel, shape, dtype, vector_bytes,
                              width):
    """The stem's kernels: the dense kx1 convolution (vertical taps only) runs up to four output
    channels per pass over the input rows (1, 3, 4, 4 + 1 and 4 + 2 outputs), the 1xk one with a
    channel multiplier two outputs per input plane where the multiplier is even (1, 2, 3, 4),
    and the stride-2 1x3 on large planes from even/odd lanes; rows narrower than a vector take
    the other paths. Every vector width (8 doubles, 16 or 8 floats): float64 to 1e-10, float32
    to 1e-5 of the float64 module."""
    width(vector_bytes)
    stem = trained_like(MicroStem(3, mid, multiplier, stride, kernel)).double()
    program, weights, tables = compile_program(stem, 3, dtype)
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    with torch.no_grad():
        ref = stem(x)
    out = torch.ops.micronet.program(x.to(dtype), weights, tables, program)
    assert tuple(out.shape) == tuple(ref.shape)
    assert rel_err(out.double(), ref) < (1e-10 if dtype == torch.float64 else 1e-5)


def _pool(kind: str) -> nn.Module | None:
    pool = nn.AdaptiveAvgPool2d(1)
    return {'none': None, 'pool': pool, 'relu6-pool-hswish': nn.Sequential(nn.ReLU6(), pool, HSwish()),
            'relu6-pool': nn.Sequential(nn.ReLU6(), pool)}[kind]


@pytest.mark.parametrize('pool, shape', [('none', (1, 1)), ('pool', (7, 7)),
                                         ('relu6-pool-hswish', (3, 5)), ('relu6-pool', (33, 33))])
@pytest.mark.parametrize('c_in, widths', [(5, (1,)), (64, (63, 64)), (70, (130, 100))])
@pytest.mark.parametrize('dtype, vector_bytes', WIDTHS, ids=WIDTH_IDS)
def test_program_head_kernels(pool, shape, c_in, widths, dtype, vector_bytes, width):
    """POOL and LINEAR layers (the classifier head's parts): every pool form, outputs that are
    and are not whole blocks of 64, every activation, at every vector width, against the
    module."""
    width(vector_bytes)
    acts = [HSwish(), nn.ReLU6(), nn.Identity()]
    layers, width = [], c_in
    for i, w in enumerate(widths):
        layers.append((nn.Linear(width, w), acts[i % 3] if len(widths) > 1 else acts[c_in % 3]))
        width = w
    part = HeadPart(_pool(pool), layers).to(dtype).eval()
    for fc, _ in layers:
        fc.weight.data.mul_(8)  # outputs on all three pieces of ReLU6 and h-swish
    x = 3 * torch.randn(2, c_in, *shape, dtype=dtype) + 4 * torch.randn(1, c_in, 1, 1, dtype=dtype)
    program, weights, tables = compile_program(part, c_in, dtype)
    assert [r.kind for r in records(program)] == (
        ['pool'] * (pool != 'none') + ['linear'] * len(widths))
    with torch.no_grad():
        ref = part(x)
        out = torch.ops.micronet.program(x, weights, tables, program)
    assert out.shape == ref.shape == (2, widths[-1], 1, 1)
    assert output_shape(program, tuple(x.shape)) == tuple(out.shape)
    with torch.no_grad():  # the last layer's input to its activation
        z = part.pool(x).flatten(1)
        for fc, act in zip(part.fcs[:-1], part.acts[:-1]):
            z = act(fc(z))
        z = part.fcs[-1](z)
    assert z.numel() < 16 or ((z < -3).any() and (z.abs() < 3).any() and (z > 6).any())
    assert rel_err(out, ref) < (1e-10 if dtype == torch.float64 else 1e-5)


def test_program_compiled_in_float32_runs_in_float64():
    """A program's layout does not depend on its dtype: compiled from a float32 backbone and
    head, then cast with ``.double()``, it equals the float64 modules to the float32 rounding of
    the weights (the blocked fc2 / LINEAR layout once did depend on it: 2e-2 off on M0)."""
    backbone = trained_like(MicroNet('m0'))
    head = HeadPart(_pool('relu6-pool-hswish'), [(nn.Linear(backbone.stage_channels[-1], 70),
                                                  HSwish())]).eval()
    programs = copy.deepcopy(backbone)
    assert convert_programs(programs) == 1
    head_program = NativeProgram(copy.deepcopy(head), backbone.stage_channels[-1])
    programs.double(), head_program.double(), backbone.double(), head.double()
    x = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    with torch.no_grad():
        feat, ref = programs(x)[-1], backbone(x)[-1]
        assert feat.dtype == torch.float64 and rel_err(feat, ref) < 1e-5
        assert rel_err(head_program(ref), head(ref)) < 1e-5


def test_program_rejects_bad_head_programs():
    """POOL and LINEAR fields, the LINEAR input shape and its parameter span are checked."""
    part = HeadPart(_pool('relu6-pool-hswish'), [(nn.Linear(8, 70), HSwish())]).eval()
    program, weights, tables = compile_program(part, 8)
    x = torch.randn(1, 8, 4, 4)

    def run(field_or_none, value, inp=x, w=weights):
        rs = records(program)
        if field_or_none is not None:
            layer, field = field_or_none
            setattr(rs[layer], field, value)
        return torch.ops.micronet.program(inp, w, tables, program_of(rs))

    with pytest.raises(RuntimeError, match='pool relu6 and hswish'):
        run((0, 'relu6'), 2)
    with pytest.raises(RuntimeError, match='linear act'):
        run((1, 'act'), 3)
    with pytest.raises(RuntimeError, match=r'linear parameters'):
        run(None, 0, w=weights[:-1])
    with pytest.raises(RuntimeError, match=r'linear of a \(C_in, 1, 1\) input'):
        run((1, 'src'), 0)  # the linear layer reads the 4x4 input, not the pool
    assert run(None, 0).shape == (1, 70, 1, 1)


def test_program_layout():
    """Shuffles cost nothing: an M2 stage has as many layers as convolutions, Shift-Max
    activations and residual adds; ReLU6 is fused into its convolution."""
    model = trained_like(MicroNet('m2'))
    stage = next(s for s in model.stages if any(getattr(b, 'use_residual', False) for b in s))
    program, _, tables = compile_program(stage, _in_channels(stage))
    kinds = [r.kind for r in records(program)]
    n_conv = sum(isinstance(m, nn.Conv2d) for m in stage.modules())
    n_dsm = sum(isinstance(m, DynamicShiftMax) for m in stage.modules())
    n_res = sum(b.use_residual for b in stage)
    assert (kinds.count('conv'), kinds.count('shift_max'), kinds.count('add')) == (
        n_conv, n_dsm, n_res)
    assert n_res >= 1 and tables.numel() > 0


def test_unsupported_parts_stay():
    """A block with spatial attention (the pose head's) has no program; convert_programs
    leaves it and converts the rest."""
    act = ActSettings(spatial_attention=True)
    spec = BlockSpec('C', 3, 1, (1, 4), 8, (2, 4), (2, 4), (2, 1, 2), 1)
    block = MicroBlockC(8, spec, act).eval()
    with pytest.raises(Unsupported, match='SpatialAttention'):
        compile_program(block, 8)
    model = nn.Sequential(trained_like(MicroNet('m0', out_indices=(2, 3))), block)
    made = convert_programs(model)
    assert made == 5  # stem + four stages (two outputs: one program per stage)
    assert isinstance(model[1], MicroBlockC) and any(
        isinstance(m, SpatialAttention) for m in model[1].modules())


def test_program_rejects_bad_programs():
    """The op checks the program against the input before running anything."""
    block = trained_like(_block('C', 3, 1, 1))
    program, weights, tables = compile_program(block, 8)
    with pytest.raises(RuntimeError, match='conv channels'):
        torch.ops.micronet.program(torch.randn(1, 9, 8, 8), weights, tables, program)
    with pytest.raises(RuntimeError, match='header'):
        torch.ops.micronet.program(torch.randn(1, 8, 8, 8), weights, tables, program[:-1])


@pytest.mark.parametrize('arch', ['m0', 'm1', 'm2', 'm3'])
def test_whole_backbone_is_one_program(arch):
    """A backbone that returns its last stage only (a classifier's) becomes ONE program, stem
    and stages, equal to the trained backbone in float64; with two outputs it keeps one
    program per stage; converting again changes nothing."""
    x = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    for out_indices, n in (((3,), 1), ((1, 3), 5)):
        model = trained_like(MicroNet(arch, out_indices=out_indices)).double()
        deploy = copy.deepcopy(model)
        assert convert_programs(deploy) == n
        assert convert_programs(deploy) == 0
        assert sum(isinstance(m, NativeProgram) for m in deploy.modules()) == n
        assert isinstance(deploy.stem, NativeProgram)
        with torch.no_grad():
            ref, out = model(x), deploy(x)
        assert len(out) == len(ref) == len(out_indices)
        assert max(rel_err(o, r) for o, r in zip(out, ref)) < 1e-9


def test_native_deploy_programs_compile_export_aoti(tmp_path):
    """``switch_to_deploy(model, 'native')`` runs the stem and every stage as one
    ``micronet::program`` call; that form matches the trained backbone in eager, under
    ``torch.compile`` (the op's fake kernel gives the output shapes), through ``torch.export``
    (one program node per stage) and as an AOTInductor package."""
    from micronet_mm.deploy import switch_to_deploy
    model = trained_like(MicroNet('m0', out_indices=(0, 1, 2, 3)))
    deploy = switch_to_deploy(copy.deepcopy(model), 'native')
    assert sum(isinstance(m, NativeProgram) for m in deploy.modules()) == 5
    with fused_shift_max.use_fused(False):  # the operators off (or not built): per layer
        layers = switch_to_deploy(copy.deepcopy(model), 'native')
    assert not any(isinstance(m, NativeProgram) for m in layers.modules())
    x = torch.randn(2, 3, 41, 53)
    with torch.no_grad():
        ref = model(x)

        def err(outs):
            return max(rel_err(o, r) for o, r in zip(outs, ref))
        assert err(deploy(x)) < 1e-4
        assert err(torch.compile(deploy)(x)) < 1e-4
        ep = torch.export.export(deploy, (x,))
        targets = [str(n.target) for n in ep.graph.nodes]
        assert targets.count('micronet.program.default') == 5
        assert err(ep.module()(x)) < 1e-4
        path = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / 'm.pt2'))
        assert err(torch._inductor.aoti_load_package(path)(x)) < 1e-4

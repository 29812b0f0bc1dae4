"""The OpenVINO operation ``micronet::Program`` (micronet_mm/csrc/openvino/program_op.*): a
fused block's layer program (micronet_mm/csrc/program.h) as one node, read from the ONNX node
``Program`` of domain ``micronet`` (inputs x, weights, tables; int64 list attribute
``program``).

The program here is written by hand (the records of program.h's header comment) and its output
checked against ``torch.ops.micronet.program`` (the same engine behind torch.library) and against
a reference computed in this file from the same parameters with ``F.conv2d`` and Eq. 4. Both
libraries are built by ``tools/setup_env.sh``; these tests fail, not skip, without them."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from micronet_mm.csrc.program_format import Record, program_of, records
from micronet_mm.deploy.rewrites.native_block import shift_max_params
from micronet_mm.ops import fused_shift_max
from micronet_mm.runtime import openvino as ovrt

CONV, SHIFT_MAX, ADD = 'conv', 'shift_max', 'add'
C_IN, C = 6, 12


def _layers(seed: int = 0) -> list[dict]:
    """The block: 1x1 grouped conv + ReLU6 -> depthwise 3x3 stride 2 read through a channel
    table -> static Shift-Max written through a channel table -> dynamic Shift-Max -> add of the
    depthwise output read through a table. Random parameters."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=0.5):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    def perm(n):
        return torch.randperm(n, generator=g)

    j, k, s = 2, 2, 3
    return [
        dict(op=CONV, src=0, in_perm=None, out_perm=None, cin=C_IN, cout=C, groups=2, k=(1, 1),
             stride=(1, 1), pad=(0, 0), dil=(1, 1), relu=True, w=randn(C, C_IN // 2, 1, 1),
             b=randn(C)),
        dict(op=CONV, src=1, in_perm=perm(C), out_perm=None, cin=C, cout=C, groups=C, k=(3, 3),
             stride=(2, 2), pad=(1, 1), dil=(1, 1), relu=False, w=randn(C, 1, 3, 3),
             b=randn(C)),
        dict(op=SHIFT_MAX, src=2, in_perm=None, out_perm=perm(C), j=j, k=k, s=0,
             index=torch.randint(0, C, (j, C), generator=g), coef=randn(k, j, C, scale=1.0)),
        dict(op=SHIFT_MAX, src=3, in_perm=None, out_perm=None, j=j, k=k, s=s,
             index=torch.randint(0, C, (j, C), generator=g), act_max=2.0, init=randn(k * j),
             w1=randn(s, C), b1=randn(s), w2=randn(k * j * C, s), b2=randn(k * j * C)),
        dict(op=ADD, src=4, second=2, in_perm=None, out_perm=None, second_perm=perm(C)),
    ]


def _encode(layers: list[dict]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """program.h's (program, weights, tables) of the layers."""
    weights: list[torch.Tensor] = []
    tables: list[torch.Tensor] = []
    sizes = {'w': 0, 't': 0}

    def put_w(*parts):
        off = sizes['w']
        for p in parts:
            weights.append(p.reshape(-1))
            sizes['w'] += p.numel()
        return off

    def put_t(t):
        if t is None:
            return -1
        off = sizes['t']
        tables.append(t.reshape(-1))
        sizes['t'] += t.numel()
        return off

    rs = []
    for lay in layers:
        head = dict(op=lay['op'], src=lay['src'], in_perm=put_t(lay['in_perm']),
                    out_perm=put_t(lay['out_perm']))
        if lay['op'] == CONV:
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (lay['k'], lay['stride'], lay['pad'],
                                                      lay['dil'])
            r = Record.make(**head, c_in=lay['cin'], c_out=lay['cout'], groups=lay['groups'],
                            kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw,
                            act=int(lay['relu']), weights=put_w(lay['w'], lay['b']))
        elif lay['op'] == SHIFT_MAX:
            params = ([lay['coef']] if lay['s'] == 0 else
                      shift_max_params(lay['act_max'], lay['init'], lay['w1'], lay['b1'],
                                       lay['w2'], lay['b2']))
            r = Record.make(**head, channels=C, shifts=lay['j'], fusions=lay['k'],
                            squeeze=lay['s'], index=put_t(lay['index']), params=put_w(*params))
        else:
            r = Record.make(**head, channels=C, second=lay['second'],
                            second_perm=put_t(lay['second_perm']))
        rs.append(r)
    return (program_of(rs), torch.cat(weights).float().numpy(),
            torch.cat(tables).to(torch.int64).numpy())


def _shift_max(x: torch.Tensor, index: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Eq. 4: y[n, i] = max_k sum_j coef[n, k, j, i] * x[n, index[j, i]]; coef (N, K, J, C)."""
    shifted = torch.stack([x[:, index[j]] for j in range(index.shape[0])], 1)  # N, J, C, H, W
    return (coef[..., None, None] * shifted[:, None]).sum(2).amax(1)


def _reference(layers: list[dict], x: torch.Tensor) -> torch.Tensor:
    """The block in float64 with torch ops, from the layers' parameters."""
    buffers = [x.double()]
    for lay in layers:
        src = buffers[lay['src']]
        if lay['in_perm'] is not None:
            src = src[:, lay['in_perm']]  # logical channel c is plane in_perm[c]
        if lay['op'] == CONV:
            y = F.conv2d(src, lay['w'], lay['b'], lay['stride'], lay['pad'], lay['dil'],
                         lay['groups'])
            y = y.clamp(0, 6) if lay['relu'] else y
        elif lay['op'] == SHIFT_MAX and lay['s'] == 0:
            y = _shift_max(src, lay['index'], lay['coef'].expand(src.shape[0], -1, -1, -1))
        elif lay['op'] == SHIFT_MAX:
            hidden = F.relu(F.linear(src.mean((2, 3)), lay['w1'], lay['b1']))
            h = F.hardsigmoid(F.linear(hidden, lay['w2'], lay['b2']))  # relu6(z + 3) / 6
            kj = lay['k'] * lay['j']
            coef = (h.view(-1, kj, C) - 0.5) * 2 * lay['act_max'] + lay['init'].view(1, kj, 1)
            y = _shift_max(src, lay['index'], coef.view(-1, lay['k'], lay['j'], C))
        else:
            second = buffers[lay['second']]
            y = src + second[:, lay['second_perm']]
        if lay['out_perm'] is not None:  # logical channel o is written to plane out_perm[o]
            planar = torch.empty_like(y)
            planar[:, lay['out_perm']] = y
            y = planar
        buffers.append(y)
    return buffers[-1]


def _onnx(path, prog: list[int], weights: np.ndarray, tables: np.ndarray, hw,
          fed_tables: bool = False) -> str:
    """One ``micronet.Program`` node; x (N, 6, H, W) with a symbolic batch; the tables an
    initializer, or (``fed_tables``) a second graph input."""
    node = helper.make_node('Program', ['x', 'weights', 'tables'], ['y'], domain='micronet',
                            program=prog)
    inputs = [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', C_IN, *hw])]
    initializer = [numpy_helper.from_array(weights, 'weights')]
    if fed_tables:
        inputs.append(helper.make_tensor_value_info('tables', TensorProto.INT64, [len(tables)]))
    else:
        initializer.append(numpy_helper.from_array(tables, 'tables'))
    graph = helper.make_graph([node], 'program', inputs,
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
                              initializer=initializer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                    helper.make_opsetid('micronet', 1)])
    onnx.save(model, str(path))
    return str(path)


def _infer(compiled, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(compiled(x.numpy())[0].copy())


HW = [(9, 7), (5, 11)]


@pytest.fixture(scope='module', params=HW, ids=[f'{h}x{w}' for h, w in HW])
def block(request, tmp_path_factory):
    """(layers, program, weights, tables, ONNX file, hw) of the hand-written block."""
    layers = _layers()
    prog, weights, tables = _encode(layers)
    path = _onnx(tmp_path_factory.mktemp('program') / 'block.onnx', prog, weights, tables,
                 request.param)
    return layers, prog, weights, tables, path, request.param


def test_onnx_node_becomes_one_program_op(block):
    """The ONNX node converts to ONE micronet::Program node; its output shape comes from
    program::infer (stride 2 of the depthwise conv: ceil(H / 2)) with the batch left dynamic."""
    *_, path, (h, w) = block
    model = ovrt.read_model(path)
    ops = [op.get_type_name() for op in model.get_ops()]
    assert ops.count('Program') == 1 and 'Convolution' not in ops
    shape = model.output(0).get_partial_shape()
    assert shape[0].is_dynamic and [shape[i].get_length() for i in (1, 2, 3)] == [
        C, (h + 1) // 2, (w + 1) // 2]


@pytest.mark.parametrize('batch', [1, 2])
def test_program_matches_torch_op_and_reference(block, batch):
    """OpenVINO's micronet::Program equals torch.ops.micronet.program (the same engine) and the
    torch reference of this file, float32 to 1e-5, batch 1 and 2 through one compiled model."""
    layers, prog, weights, tables, path, hw = block
    assert fused_shift_max.available(), 'the torch operator is not built: bash tools/setup_env.sh'
    x = torch.randn(batch, C_IN, *hw, generator=torch.Generator().manual_seed(batch))
    got = _infer(ovrt.compile_model(path), x)
    torch_op = torch.ops.micronet.program(x, torch.from_numpy(weights),
                                          torch.from_numpy(tables), prog)
    ref = _reference(layers, x).float()
    assert got.shape == ref.shape == (batch, C, (hw[0] + 1) // 2, (hw[1] + 1) // 2)
    assert ref.abs().max() > 1  # the block does not collapse to zeros
    torch.testing.assert_close(got, torch_op, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_ir_round_trip(block, tmp_path):
    """save_model / read_model of the .xml keeps the node and its ``program`` attribute: same
    output as the ONNX file, bit for bit."""
    import openvino as ov
    *_, prog, _, _, path, hw = block
    xml = str(tmp_path / 'block.xml')
    ov.save_model(ovrt.read_model(path), xml, compress_to_fp16=False)
    assert 'micronet' in open(xml).read()
    model = ovrt.read_model(xml)
    node = next(op for op in model.get_ops() if op.get_type_name() == 'Program')
    assert list(node.get_attributes()['program']) == prog
    x = torch.randn(2, C_IN, *hw)
    assert torch.equal(_infer(ovrt.compile_model(xml), x), _infer(ovrt.compile_model(path), x))


def _bad(prog: list[int], layer: int, field: str, value: int) -> list[int]:
    rs = records(prog)
    setattr(rs[layer], field, value)
    return program_of(rs)


@pytest.mark.parametrize('edit, message', [
    ((0, 'c_in', 5), 'conv channels 0'),  # layer 0 reads 5 channels, x has 6
    ((3, 'channels', 10), 'shift-max 3'),  # dynamic Shift-Max of 10 channels after 12
    ((0, 'weights', 10 ** 6), 'conv weights'),  # weights offset past the array
    ((2, 'index', 10 ** 6), 'shift index'),  # shift index table past the tables array
    ((1, 'sh', 0), 'conv.sh must be >= 1'),  # stride 0 (infer() would divide by it)
    ((4, 'second', 5), 'add 4'),  # adds the output of a later layer
], ids=['channels', 'shift-max-channels', 'weights-offset', 'table-offset', 'stride-0',
        'add-source'])
def test_bad_program_is_a_validation_error(block, tmp_path, edit, message):
    """A program that does not fit its input or its arrays fails when the model is read, with
    the message naming the check and the layer, never an out-of-bounds read."""
    _, prog, weights, tables, _, hw = block
    path = _onnx(tmp_path / 'bad.onnx', _bad(prog, *edit), weights, tables, hw)
    with pytest.raises(Exception, match=message):
        ovrt.compile_model(path)


def test_bad_table_entry_is_a_validation_error(block, tmp_path):
    """A channel table entry outside the channels it addresses (a corrupt IR or ONNX file)."""
    _, prog, weights, tables, _, hw = block
    bad = tables.copy()
    bad[0] = C  # layer 1's in_perm is the first table
    path = _onnx(tmp_path / 'bad.onnx', prog, weights, bad, hw)
    with pytest.raises(Exception, match=r'in_perm entry 12 outside \[0, 12\) \(layer 1\)'):
        ovrt.compile_model(path)


def test_tables_fed_at_run_time_are_refused(block, tmp_path):
    """Tables as a graph input instead of a Constant are refused when the model is read: their
    entries could not be checked (OpenVINO's CPU plugin skips a node whose re-validation fails
    at run time, silently)."""
    _, prog, weights, tables, _, hw = block
    with pytest.raises(Exception, match='tables must be a Constant'):
        ovrt.read_model(_onnx(tmp_path / 'fed.onnx', prog, weights, tables, hw, True))


def test_bench_ov_program_smoke(capsys):
    """tools/analysis/bench_ov_program.py (a node's per-call cost) on few calls: every row is
    measured, and the Program node's output equals the Conv's (checked inside)."""
    from tools.analysis.bench_ov_program import main
    med = main(['--rounds', '1', '--calls', '2', '--tables', '16'])
    assert set(med) == {'relu', 'conv', 'program', 'conv dynamic-N', 'program dynamic-N'}
    assert all(v > 0 for v in med.values())
    assert '| program dynamic-N |' in capsys.readouterr().out

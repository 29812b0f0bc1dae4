"""Chained ``micronet.Program`` nodes merged into one (micronet_mm/deploy/rewrites/
program_chain.py): the concatenated program equals its parts run one after the other, the
exported classifier is one node that OpenVINO runs bit-for-bit as it runs the three, and a
program whose output something else reads, or that a reshape separates from a program that
could read other shapes, is left apart."""
import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from conftest import M0_CONFIG, rel_err, trained_like
from torch import nn

from micronet_mm.deploy import switch_to_deploy
from micronet_mm.deploy.rewrites.native_block import HeadPart, _in_channels, compile_program
from micronet_mm.deploy.rewrites.program_chain import concat_programs, merge_program_nodes
from micronet_mm.models import MicroNet
from micronet_mm.ops import fused_shift_max
from micronet_mm.ops.shift_max import HSwish
from micronet_mm.ops.stem import MicroStem
from micronet_mm.runtime import openvino as ovrt


@pytest.fixture(autouse=True, scope='module')
def _library():
    assert fused_shift_max.available(), 'not built: python -m micronet_mm.csrc.build'


def _run(program, x):
    prog, w, t = program
    return torch.ops.micronet.program(x, torch.as_tensor(w), torch.as_tensor(t), prog)


def _numpy(program):
    prog, w, t = program
    return prog, w.numpy(), t.numpy()


def _head_parts(c_in: int = 24, mid: int = 40, out: int = 70, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    fc1, fc2 = nn.Linear(c_in, mid), nn.Linear(mid, out)
    for p in (*fc1.parameters(), *fc2.parameters()):
        p.data.normal_(0, 0.3, generator=g)
    pool = nn.Sequential(nn.ReLU6(), nn.AdaptiveAvgPool2d(1), HSwish())
    return HeadPart(pool, [(fc1, HSwish())]), HeadPart(None, [(fc2, HSwish())])


@pytest.mark.parametrize('arch', ['m0', 'm1', 'm2', 'm3', 'v1-m2'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=['f64', 'f32'])
def test_concat_programs_equals_parts_in_turn(arch, dtype):
    """Stem, every stage and a head, compiled apart and concatenated, run as the parts run one
    after the other (batch 2, odd size): buffers, weight and table offsets moved right."""
    backbone = trained_like(MicroNet(arch, out_indices=(3,)))
    with torch.no_grad():
        channels = backbone(torch.zeros(1, 3, 32, 32))[-1].shape[1]
        pool, fc = _head_parts(channels, seed=1)
        parts = [_numpy(compile_program(m, _in_channels(m), dtype))
                 for m in [backbone.stem, *backbone.stages]]
        parts += [_numpy(compile_program(pool, channels, dtype)),
                  _numpy(compile_program(fc, 40, dtype))]
        x = torch.randn(2, 3, 67, 45, dtype=dtype, generator=torch.Generator().manual_seed(0))
        want = x
        for part in parts:
            want = _run(part, want)
        whole = parts[0]
        for part in parts[1:]:
            whole = concat_programs(whole, part)
        assert whole[0][1] == sum(p[0][1] for p in parts)
        got = _run(whole, x)
    assert got.shape == want.shape == (2, 70, 1, 1)
    assert rel_err(got, want) < (1e-12 if dtype == torch.float64 else 1e-6)


def test_concat_programs_refuses_unlike():
    pool, fc = _head_parts()
    with torch.no_grad():
        a = _numpy(compile_program(pool, 24, torch.float32))
        b = _numpy(compile_program(fc, 40, torch.float64))
    with pytest.raises(ValueError, match='only alike programs'):
        concat_programs(a, b)


def _export(model, path, merge: bool) -> list[str]:
    from tools.deployment.export_onnx import export
    export(model, str(path), (96, 112), custom_opsets={'micronet': 1}, merge_programs=merge)
    return [n.op_type for n in onnx.load(str(path)).graph.node if n.op_type != 'Constant']


def test_classifier_export_is_one_program_node(tmp_path):
    """The M0 classifier's three programs (backbone; pool + fc1; fc2) export as ONE
    ``Program`` node (the flatten and unsqueezes between them gone), which OpenVINO runs to
    the same bits as the three, on batch 2, and to 1e-4 of PyTorch."""
    from tools.deployment.export_onnx import load_classifier
    model = trained_like(load_classifier(M0_CONFIG, None))
    native = switch_to_deploy(copy.deepcopy(model), 'openvino')
    apart = _export(native, tmp_path / 'apart.onnx', merge=False)
    merged = _export(native, tmp_path / 'merged.onnx', merge=True)
    assert apart.count('Program') == 3 and 'Unsqueeze' in apart
    assert merged == ['Program', 'Flatten']
    graph = onnx.load(str(tmp_path / 'merged.onnx'))
    onnx.checker.check_model(graph, full_check=True)
    made = {o for n in graph.graph.node for o in n.output}
    assert all(v.name in made for v in graph.graph.value_info)  # no stale shapes
    x = torch.randn(2, 3, 96, 112)
    got = ovrt.compile_model(str(tmp_path / 'merged.onnx'))(x.numpy())[0]
    three = ovrt.compile_model(str(tmp_path / 'apart.onnx'))(x.numpy())[0]
    assert np.array_equal(got, three)
    with torch.no_grad():
        ref = model(x, mode='tensor')
    assert rel_err(torch.from_numpy(got), ref) < 1e-4


def _graph(nodes, arrays, outputs, path):
    """A float32 model of ``nodes`` (input ``x``: (1, 24, 5, 7)), ``arrays`` its
    initializers, ``outputs`` the graph outputs' names, saved at ``path``."""
    graph = helper.make_graph(
        nodes, 'chain', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 24, 5, 7])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                    helper.make_opsetid('micronet', 1)])
    onnx.save(model, str(path))
    return model


def _program_node(name, src, program, out):
    return helper.make_node('Program', [src, f'{name}_w', f'{name}_t'], [out], domain='micronet',
                            program=program[0])


def _arrays(name, program):
    return {f'{name}_w': program[1], f'{name}_t': program[2]}


@pytest.mark.parametrize('case', ['pool-flatten-linear', 'shared', 'conv-then-reshape',
                                  'reshape-then-pool'])
def test_merge_program_nodes(tmp_path, case):
    """Merged: pool + fc1 -> Flatten -> Unsqueeze -> fc2 (fc2 reads a (C, 1, 1) input only).
    Left apart: the first program's output is also a graph output; a reshape follows a
    program whose output has a plane (a convolution's); a reshape precedes a program that
    pools (it would see another shape). OpenVINO's outputs are those of the graph as built."""
    pool, fc = _head_parts()
    with torch.no_grad():
        a = _numpy(compile_program(pool, 24, torch.float32))
        b = _numpy(compile_program(fc, 40, torch.float32))
        conv = _numpy(compile_program(_stem(), 24, torch.float32))
        second_pool = _numpy(compile_program(HeadPart(nn.AdaptiveAvgPool2d(1),
                                                      [(nn.Linear(40, 70), nn.Identity())]),
                                             40, torch.float32))
    first, second = {'pool-flatten-linear': (a, b), 'shared': (a, b),
                     'conv-then-reshape': (conv, b), 'reshape-then-pool': (a, second_pool)}[case]
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), 'axes')
    nodes = [_program_node('p1', 'x', first, 'y1'),
             helper.make_node('Flatten', ['y1'], ['f'], axis=1),
             helper.make_node('Constant', [], ['axes'], value=axes),
             helper.make_node('Unsqueeze', ['f', 'axes'], ['u'])]
    if case == 'conv-then-reshape':  # a stem's (1, 8, 5, 7) output reshaped to (1, 280, 1, 1)
        nodes[1:] = [helper.make_node('Reshape', ['y1', 'shape'], ['u'])]
        shape = {'shape': np.array([1, -1, 1, 1], dtype=np.int64)}
    else:
        shape = {}
    nodes.append(_program_node('p2', 'u', second, 'y'))
    outputs = ['y', 'y1'] if case == 'shared' else ['y']
    model = _graph(nodes, {**_arrays('p1', first), **_arrays('p2', second), **shape}, outputs,
                   tmp_path / 'before.onnx')
    merged = merge_program_nodes(model)
    ops = [n.op_type for n in model.graph.node]
    if case == 'pool-flatten-linear':
        assert merged == 1 and ops == ['Program']
        assert [i.name for i in model.graph.initializer] == ['y/weights', 'y/tables']
        assert model.graph.node[0].output[0] == 'y'
    else:
        assert merged == 0 and ops.count('Program') == 2
    if case == 'conv-then-reshape':
        return  # (a stem's 8 planes of 5x7 flattened are not fc2's 40 inputs: not runnable)
    onnx.save(model, str(tmp_path / 'after.onnx'))
    x = np.random.default_rng(0).standard_normal((1, 24, 5, 7)).astype(np.float32)
    before = ovrt.compile_model(str(tmp_path / 'before.onnx'))(x)[0]
    after = ovrt.compile_model(str(tmp_path / 'after.onnx'))(x)[0]
    assert before.shape == (1, 70, 1, 1) and np.array_equal(before, after)


def _stem():
    return trained_like(MicroStem(24, 4, stride=1))

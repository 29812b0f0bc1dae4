"""The native engine refuses what it cannot run, on every boundary, with an error and never a
crash: a program (micronet_mm/csrc/program.h) or Shift-Max node from a model file, and the
torch ops' arguments. Each case runs in a child process (conftest.run_child), so that a
SIGSEGV or SIGFPE fails its test instead of the run; the child prints the error it got and the
test checks it names the fault.

Cases: the crashes once seen (a ShiftMax node with groups=0, num_shifts or num_fusions of 100, a
rank-0 weight, a one-element coefficient input; a Program whose 1x1 convolution pads by 2^31 - 1,
whose depthwise layer has a huge dilation, or whose padding asks for gigabytes; the torch
Shift-Max ops with an out-of-range index) and the classes they stand for (overflowing sizes,
offsets and table entries outside their arrays, non-permutation output tables, bad headers).
Both libraries are built by tools/setup_env.sh; these tests fail, not skip, without them."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import run_child

from micronet_mm.csrc.program_format import FIELDS, VERSION, Record, program_of

BIG = 2 ** 31 - 1  # the largest value a record field may hold


def conv(c_in=4, c_out=4, groups=1, k=(1, 1), stride=(1, 1), pad=(0, 0), dil=(1, 1),
         src=0) -> Record:
    return Record.make('conv', src, c_in=c_in, c_out=c_out, groups=groups, kh=k[0], kw=k[1],
                       sh=stride[0], sw=stride[1], ph=pad[0], pw=pad[1], dh=dil[0], dw=dil[1],
                       act=0, weights=0)


def shift_max(c=4, j=2, k=2, squeeze=0, src=0) -> Record:
    return Record.make('shift_max', src, channels=c, shifts=j, fusions=k, squeeze=squeeze,
                       index=0, params=0)


# name: (records, input (C, H, W), weights length, tables, message)
PROGRAMS = {
    'conv-1x1-padding-2^31-1': ([conv(pad=(BIG, BIG))], (4, 8, 8), 20, [],
                                'padded input plane|overflows'),
    'conv-1x1-padding-2^31-1-rows': ([conv(pad=(BIG, 0))], (4, 8, 8), 20, [],
                                     'padded input plane'),
    'depthwise-huge-dilation': ([conv(groups=4, c_out=4, k=(3, 3), dil=(BIG, BIG))], (4, 8, 8),
                                40, [], 'empty conv output'),
    'depthwise-huge-dilation-and-padding': (
        [conv(groups=4, k=(3, 3), pad=(BIG, BIG), dil=(BIG, BIG), stride=(BIG, BIG))],
        (4, 8, 8), 40, [], 'padded input plane|overflows'),
    'padding-20000': ([conv(pad=(20000, 20000))], (4, 8, 8), 20, [], 'exceeds the limit'),
    'strided-huge-padding': ([conv(groups=4, k=(3, 1), pad=(2 ** 30, 0), stride=(2 ** 30, 1))],
                             (4, 8, 8), 16, [], 'padded input plane'),
    'buffers-over-the-limit': ([conv(c_out=BIG)], (4, 8, 8), 0, [], 'the buffers'),
    'field-2^31': ([conv(c_out=2 ** 31)], (4, 8, 8), 0, [], 'out of range'),
    'field-negative': ([conv(pad=(-2, 0))], (4, 8, 8), 20, [], 'out of range'),
    'groups-0': ([conv(groups=0)], (4, 8, 8), 20, [], 'conv.groups must be >= 1'),
    'stride-0': ([conv(stride=(0, 1))], (4, 8, 8), 20, [], 'conv.sh must be >= 1'),
    'weights-past-the-array': ([conv()], (4, 8, 8), 19, [], 'conv weights'),
    'shift-max-100-shifts': ([shift_max(j=100)], (4, 2, 2), 10 ** 4, [0] * 400, 'shift-max'),
    'shift-max-0-fusions': ([shift_max(k=0)], (4, 2, 2), 10 ** 4, [0] * 8, 'shift-max'),
    'shift-index-outside': ([shift_max(j=1, k=1)], (4, 2, 2), 4, [0, 1, 2, 4],
                            r'shift index entry 4 outside \[0, 4\)'),
    'shift-index-past-tables': ([shift_max(j=2, k=1)], (4, 2, 2), 8, [0, 1, 2, 3],
                                'shift index'),
    'shift-max-params-past-weights': ([shift_max(j=1, k=1, squeeze=3)], (4, 2, 2), 100,
                                      [0, 1, 2, 3], 'shift-max parameters'),
    'add-later-buffer': ([Record.make('add', 0, channels=4, second=1, second_perm=-1)],
                         (4, 2, 2), 0, [], 'add 0'),
    'add-other-shape': ([conv(stride=(2, 2)), Record.make('add', 1, channels=4, second=0,
                                                          second_perm=-1)],
                        (4, 4, 4), 20, [], 'different shapes'),
    'source-later-buffer': ([conv(src=1)], (4, 8, 8), 20, [], 'bad source'),
    'unknown-op': ([Record([9] + [0] * (FIELDS - 1))], (4, 8, 8), 0, [], 'unknown op 9'),
}


def _program_case(name: str):
    records, chw, n_weights, tables, _ = PROGRAMS[name]
    return (program_of(records), torch.randn(2, *chw), torch.randn(n_weights),
            torch.tensor(tables, dtype=torch.int64))


def _edited(name: str):
    """Cases that edit a valid program or its tables."""
    good = program_of([conv(), conv(src=1)])
    weights, x = torch.randn(40), torch.randn(1, 4, 5, 5)
    if name == 'out-perm-not-a-permutation':
        rs = [conv(), conv(src=1)]
        rs[1].out_perm = 0
        return program_of(rs), x, weights, torch.tensor([0, 1, 1, 3])
    if name == 'in-perm-negative-entry':
        rs = [conv(), conv(src=1)]
        rs[1].in_perm = 0
        return program_of(rs), x, weights, torch.tensor([0, -1, 2, 3])
    if name == 'header-huge-layer-count':
        return [VERSION, 2 ** 62] + good[2:], x, weights, torch.zeros(0, dtype=torch.int64)
    if name == 'header-negative-layer-count':
        return [VERSION, -1] + good[2:], x, weights, torch.zeros(0, dtype=torch.int64)
    if name == 'header-short':
        return good[:-1], x, weights, torch.zeros(0, dtype=torch.int64)
    raise KeyError(name)


EDITED = {'out-perm-not-a-permutation': 'not a permutation',
          'in-perm-negative-entry': r'in_perm entry -1 outside \[0, 4\)',
          'header-huge-layer-count': 'bad header', 'header-negative-layer-count': 'bad header',
          'header-short': 'bad header'}


def load_torch_ops() -> None:
    """The torch library, as micronet_mm.ops.fused_shift_max loads it."""
    from micronet_mm.csrc.build import library_path
    torch.ops.load_library(str(library_path()))


def child_program(name: str) -> None:
    """In the child: run the case through torch.ops.micronet.program; print the error."""
    load_torch_ops()
    prog, x, weights, tables = _program_case(name) if name in PROGRAMS else _edited(name)
    try:
        y = torch.ops.micronet.program(x, weights, tables, prog)
        print('NO ERROR', tuple(y.shape))
    except RuntimeError as e:
        print('ERROR:', str(e).splitlines()[0])


def _error_of(proc) -> str:
    lines = [line for line in proc.stdout.splitlines() if line.startswith(('ERROR:', 'NO '))]
    assert lines, proc.stdout + proc.stderr
    return lines[-1]


@pytest.mark.parametrize('name', list(PROGRAMS) + list(EDITED))
def test_program_op_refuses(name):
    """torch.ops.micronet.program: a clean RuntimeError naming the check, never a crash."""
    message = PROGRAMS[name][-1] if name in PROGRAMS else EDITED[name]
    proc = run_child('import test_native_safety as t; t.child_program(%r)' % name)
    error = _error_of(proc)
    assert error.startswith('ERROR:'), error
    assert re.search(message, error), error


# torch Shift-Max ops: name -> (call, message)
SHIFT_MAX_CALLS = ('forward-index-above', 'forward-index-negative', 'backward-index-above',
                   'dynamic-index-above', 'forward-0-fusions', 'forward-100-shifts',
                   'dynamic-init-rank-1')


def child_shift_max(name: str) -> None:
    load_torch_ops()
    ops = torch.ops.micronet
    n, c, j, k, s = 2, 4, 2, 2, 3
    x = torch.randn(n, c, 5, 5)
    index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    bad = index.clone()
    bad[1, 2] = -1 if name.endswith('negative') else 10 ** 6
    coef = torch.randn(n, k, j, c)
    params = (torch.randn(s, c), torch.randn(s), torch.randn(k * j * c, s), torch.randn(k * j * c),
              torch.randn(k, j))
    calls = {
        'forward-index-above': lambda: ops.shift_max(x, coef, bad),
        'forward-index-negative': lambda: ops.shift_max(x, coef, bad),
        'backward-index-above': lambda: ops.shift_max_backward(torch.randn_like(x), x, coef, bad),
        'dynamic-index-above': lambda: ops.shift_max_dynamic(x, *params, 2.0, bad),
        'forward-0-fusions': lambda: ops.shift_max(x, coef[:, :0], index),
        'forward-100-shifts': lambda: ops.shift_max(x, torch.randn(n, k, 100, c),
                                                    torch.zeros(100, c, dtype=torch.int64)),
        'dynamic-init-rank-1': lambda: ops.shift_max_dynamic(x, *params[:4], torch.randn(k * j),
                                                             2.0, index),
    }
    try:
        calls[name]()
        print('NO ERROR')
    except RuntimeError as e:
        print('ERROR:', str(e).splitlines()[0])


@pytest.mark.parametrize('name', SHIFT_MAX_CALLS)
def test_shift_max_ops_refuse(name):
    """torch.ops.micronet.shift_max / _backward / _dynamic check every index entry and the
    coefficient shapes before touching memory."""
    proc = run_child('import test_native_safety as t; t.child_shift_max(%r)' % name)
    error = _error_of(proc)
    assert error.startswith('ERROR:') and 'micronet::shift_max' in error, error


def test_valid_cases_still_run():
    """The cases' valid neighbours run (the checks refuse the fault, not the layer)."""
    load_torch_ops()
    x = torch.randn(2, 4, 8, 8)
    y = torch.ops.micronet.program(x, torch.randn(20), torch.zeros(0, dtype=torch.int64),
                                   program_of([conv(pad=(2, 3))]))
    assert y.shape == (2, 4, 12, 14)
    index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    assert torch.ops.micronet.shift_max(x, torch.randn(2, 2, 2, 4), index).shape == x.shape


# ---- OpenVINO: the same faults in a model file, read by micronet_mm.runtime.openvino

def _shift_max_onnx(path: str, attrs: dict, inputs: dict[str, np.ndarray],
                    batch: int | str = 1) -> str:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node('ShiftMax', ['x', *inputs], ['y'], domain='micronet', **attrs)
    graph = helper.make_graph(
        [node], 'shift_max',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [batch, 4, 5, 5])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inputs.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                      helper.make_opsetid('micronet', 1)]), path)
    return path


def _program_onnx(path: str, prog: list[int], weights: np.ndarray, tables: np.ndarray,
                  chw) -> str:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node('Program', ['x', 'weights', 'tables'], ['y'], domain='micronet',
                            program=prog)
    graph = helper.make_graph(
        [node], 'program', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, *chw])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weights, 'weights'),
                     numpy_helper.from_array(tables, 'tables')])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                      helper.make_opsetid('micronet', 1)]), path)
    return path


STATIC = {'groups': 1, 'num_shifts': 2, 'num_fusions': 2, 'inner_shift': 1, 'act_max': 2.0}


def _f32(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _dynamic_params(s=3, c=4, j=2, k=2):
    return {'w1': _f32(s, c), 'b1': _f32(s), 'w2': _f32(k * j * c, s), 'b2': _f32(k * j * c),
            'init': _f32(k, j)}


def _ov_shift_max_case(name: str):
    """(attributes, inputs) of a ShiftMax node case."""
    coef = {'coef': _f32(2, 2, 4)}
    if name == 'groups-0':
        return dict(STATIC, groups=0), coef
    if name == 'num-shifts-100':
        return dict(STATIC, num_shifts=100), coef
    if name == 'num-fusions-100':
        return dict(STATIC, num_fusions=100), coef
    if name == 'rank-0-weight':
        return STATIC, dict(_dynamic_params(), w1=np.array(1.0, dtype=np.float32))
    if name == 'one-element-coef':
        return STATIC, {'coef': _f32(1)}
    if name == 'fc2-too-short':
        return STATIC, dict(_dynamic_params(), w2=_f32(2, 3))
    if name == 'groups-3-of-4-channels':
        return dict(STATIC, groups=3), coef
    raise KeyError(name)


OV_SHIFT_MAX = ('groups-0', 'num-shifts-100', 'num-fusions-100', 'rank-0-weight',
                'one-element-coef', 'fc2-too-short', 'groups-3-of-4-channels',
                'one-element-coef-dynamic-batch', 'fc2-too-short-dynamic-batch')
OV_PROGRAMS = ('conv-1x1-padding-2^31-1', 'depthwise-huge-dilation',
               'depthwise-huge-dilation-and-padding', 'padding-20000', 'shift-max-100-shifts',
               'shift-index-outside', 'weights-past-the-array')


def child_openvino(kind: str, name: str, folder: str) -> None:
    """In the child: write the case's ONNX file, compile and run it; print the error."""
    import os
    from micronet_mm.runtime import openvino as ovrt
    ovrt.extension_library()  # raises when the extension is not built
    path = os.path.join(folder, 'case.onnx')
    if kind == 'shift_max':  # (a dynamic batch: the checks cannot wait for the shapes of a call)
        dynamic = name.endswith('-dynamic-batch')
        _shift_max_onnx(path, *_ov_shift_max_case(name.replace('-dynamic-batch', '')),
                        'N' if dynamic else 1)
        x = _f32(2 if dynamic else 1, 4, 5, 5)
    else:
        records, chw, n_weights, tables, _ = PROGRAMS[name]
        _program_onnx(path, program_of(records), _f32(n_weights),
                      np.array(tables, dtype=np.int64), chw)
        x = _f32(1, *chw)
    try:
        y = ovrt.compile_model(path)(x)[0]
        print('NO ERROR', y.shape, float(np.abs(y).max()))
    except Exception as e:  # noqa: BLE001 (OpenVINO raises RuntimeError and its own types)
        print('ERROR:', ' '.join(str(e).split())[:2000])


@pytest.mark.parametrize('name', OV_SHIFT_MAX)
def test_openvino_shift_max_node_refuses(name, tmp_path):
    """A micronet.ShiftMax node whose attributes or inputs do not fit: an error from
    compile_model, never a crash or values read past an input."""
    proc = run_child('import test_native_safety as t; t.child_openvino(%r, %r, %r)'
                     % ('shift_max', name, str(tmp_path)))
    error = _error_of(proc)
    assert error.startswith('ERROR:') and 'micronet::ShiftMax' in error, error


@pytest.mark.parametrize('name', OV_PROGRAMS)
def test_openvino_program_node_refuses(name, tmp_path):
    """The program cases as a micronet.Program node of a model file: the same message."""
    proc = run_child('import test_native_safety as t; t.child_openvino(%r, %r, %r)'
                     % ('program', name, str(tmp_path)))
    error = _error_of(proc)
    assert error.startswith('ERROR:'), error
    assert re.search(PROGRAMS[name][-1], error), error

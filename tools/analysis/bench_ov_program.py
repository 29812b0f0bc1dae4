"""What one OpenVINO ``micronet::Program`` node costs per call: a trivial program (one 1x1 conv)
against the same conv as a standard ONNX ``Conv``, with a ``Relu``-only model as the floor
(request and Python overhead), in one interleaved run, one thread, float32.

    python tools/analysis/bench_ov_program.py [--channels 8] [--size 4] [--tables 0]
        [--rounds 30] [--calls 2000]

Rows ``conv`` / ``program``: batch 1 fixed in the model. Rows ``conv dynamic-N`` /
``program dynamic-N``: the batch is a symbolic dimension; there OpenVINO's CPU plugin
re-validates a clone of the custom node, its inputs copied into Constants, on every call, so
the cost grows with the tables (``--tables`` unused entries are added to them).
"""
from __future__ import annotations

import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def _models(folder: str, channels: int, size: int, tables: int) -> dict[str, str]:
    """The ONNX files, by row name."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.standard_normal((channels, channels, 1, 1)).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    # program.h: [kVersion, L, record]; CONV from buffer 0, no channel tables, 1x1, stride 1
    record = [1, 0, -1, -1, channels, channels, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    conv = ([helper.make_node('Conv', ['x', 'w', 'b'], ['y'])],
            [numpy_helper.from_array(w, 'w'), numpy_helper.from_array(b, 'b')])
    program = ([helper.make_node('Program', ['x', 'wt', 'tb'], ['y'], domain='micronet',
                                 program=[1, 1] + record)],
               [numpy_helper.from_array(np.concatenate([w.ravel(), b]), 'wt'),
                numpy_helper.from_array(np.zeros(max(tables, 1), np.int64), 'tb')])
    relu = ([helper.make_node('Relu', ['x'], ['y'])], [])
    paths = {}
    for name, (nodes, inits), batch in [('relu', relu, 1), ('conv', conv, 1),
                                        ('program', program, 1), ('conv dynamic-N', conv, 'N'),
                                        ('program dynamic-N', program, 'N')]:
        x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [batch, channels, size, size])
        y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
        graph = helper.make_graph(nodes, 'bench', [x], [y], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                        helper.make_opsetid('micronet', 1)])
        paths[name] = osp.join(folder, name.replace(' ', '_') + '.onnx')
        onnx.save(model, paths[name])
    return paths


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Prints and returns the median microseconds per call of each row."""
    from micronet_mm.runtime import openvino as ovrt
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--channels', type=int, default=8)
    parser.add_argument('--size', type=int, default=4, help='height and width')
    parser.add_argument('--tables', type=int, default=0, help='unused table entries')
    parser.add_argument('--rounds', type=int, default=30)
    parser.add_argument('--calls', type=int, default=2000, help='calls per round')
    args = parser.parse_args(argv)
    x = np.random.default_rng(1).standard_normal(
        (1, args.channels, args.size, args.size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        requests = {}
        for name, path in _models(folder, args.channels, args.size, args.tables).items():
            requests[name] = ovrt.compile_model(path, threads=1).create_infer_request()
            requests[name].infer([x])
    ref = requests['conv'].get_output_tensor(0).data
    np.testing.assert_allclose(requests['program'].get_output_tensor(0).data, ref, rtol=1e-5,
                               atol=1e-5)
    times: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(args.rounds):
        for name, request in requests.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                request.infer()
            times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f'| model ({args.channels}x{args.size}x{args.size}, 1x1 conv) | us/call | '
          f'- relu | ÷ conv |')
    print('| --- | --- | --- | --- |')
    for name, v in med.items():
        base = med['conv dynamic-N' if 'dynamic' in name else 'conv']
        print(f'| {name} | {v:.2f} | {v - med["relu"]:+.2f} | {v / base:.2f} |')
    return med


if __name__ == '__main__':
    from micronet_mm.errors import run_cli
    run_cli(main)

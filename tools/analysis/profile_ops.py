"""Where the CPU time goes: ONNX Runtime profile by op type (MicroNet deploy export vs
MobileNetV3-Small x0.5), OpenVINO per-node profile (``PERF_COUNT``) by node type of the deploy
export, the fused export (``backend='openvino'``: one ``micronet::Program`` node for the
classifier, stem, stages and head, merged by the export; also its slowest nodes by name) and MobileNetV3-Small x0.5, and
torch.profiler of the deploy model in eager, one thread, batch 1. Inside the Program nodes:
``tools/analysis/bench_program.py``.

    OMP_NUM_THREADS=1 python tools/analysis/profile_ops.py [m2] [--runs 200]

The models, the exports, the ONNX Runtime session options and the OpenVINO compile options
(CPU, f32, one thread, one stream) are those of tools/analysis/benchmark.py. OpenVINO's node
types: ``Reorder`` nodes convert between the plugin's planar and blocked layouts, ``Subgraph``
nodes are its fused elementwise chains; the native operations (``micronet::Program``,
``micronet::ShiftMax``) run as ``Reference`` nodes.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from micronet_mm.deploy import switch_to_deploy  # noqa: E402
from micronet_mm.errors import run_cli  # noqa: E402
from tools.analysis.bench_models import build, export_file, onnx_session, openvino_request  # noqa: E402,E501

SHAPE = (224, 224)


def role(event: dict) -> str:
    """The part of MicroNet a profiled ONNX Runtime node belongs to (from its name, op type and
    output rank)."""
    name, op = event['name'], event['args']['op_name']
    shape = (event['args'].get('output_type_shape') or [{}])[0]
    rank = len(next(iter(shape.values()), [])) if shape else 0
    if '/head/' in name:
        return 'classifier head (pooling, 2 FC)'
    if '/act' in name:
        if op in ('Mul', 'Add', 'Max', 'Gather') and rank == 4:
            return 'Shift-Max fusions: shift Gather, Mul, Add, Max over the feature map'
        return 'Shift-Max coefficients: ReduceSum, 2 Gemm, Add, Reshape, Split'
    if 'shuffle' in name:
        return 'channel shuffles (Gather)'
    if op in ('Conv', 'FusedConv', 'ReorderInput', 'ReorderOutput') or 'depthwise' in name \
            or 'stem' in name:
        return 'convolutions (+ NCHWc reorders, depthwise bias maps, ReLU6)'
    return 'other (residual Add, ...)'


def print_table(title: str, events: list[dict], key, total_us: float, runs: int) -> None:
    """Kernel time per run and node count, grouped by ``key(event)``, largest first."""
    groups = collections.defaultdict(lambda: [0, 0])
    for e in events:
        groups[key(e)][0] += e['dur']
        groups[key(e)][1] += 1
    print(f'| {title} | ms/run | share | nodes |')
    print('| --- | --- | --- | --- |')
    for k, (dur, count) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        print(f'| {k} | {dur / runs / 1000:.3f} | {100 * dur / runs / total_us:.0f}% '
              f'| {count // runs} |')


def profile_ort(tag: str, model: torch.nn.Module, tmp: str, runs: int) -> None:
    """Run ``model``'s batch-1 export ``runs`` times under ONNX Runtime's profiler and print
    its kernel time by op type (and, for a MicroNet deploy export, by role)."""
    sess = onnx_session(model, SHAPE, tmp, tag, profile=True)
    x = torch.randn(1, 3, *SHAPE).numpy()
    for _ in range(runs):
        sess.run(None, {'input': x})
    with open(sess.end_profiling()) as f:
        events = [e for e in json.load(f)
                  if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time')]
    total = sum(e['dur'] for e in events) / runs
    print(f'## ORT {tag}: {total / 1000:.2f} ms of kernel time per run, nodes per run '
          f'{len(events) // runs}')
    print_table('op type', events, lambda e: e['args']['op_name'], total, runs)
    if tag.endswith('-deploy'):
        print_table('role', events, role, total, runs)


def profile_openvino(tag: str, path: str, runs: int, nodes: int = 0
                     ) -> dict[str, tuple[float, int]]:
    """Run ``path`` ``runs`` times in OpenVINO with per-node profiling and print its time by
    node type (and, with ``nodes``, its slowest nodes by name); returns ``{node type: (ms per
    run, nodes)}``."""
    from micronet_mm.runtime.openvino import profile_by_type
    req = openvino_request(path, profile=True)
    x = torch.randn(1, 3, *SHAPE).numpy()
    total = collections.defaultdict(lambda: [0.0, 0])
    by_node = collections.defaultdict(float)
    for _ in range(runs):
        req.infer({0: x})
        for kind, (ms, count) in profile_by_type(req).items():
            total[kind][0] += ms / runs
            total[kind][1] = count
        if nodes:
            for info in req.get_profiling_info():
                if info.status.name == 'EXECUTED':
                    by_node[info.node_name, info.node_type] += \
                        info.real_time.total_seconds() * 1e3 / runs
    run_ms = sum(v[0] for v in total.values())
    print(f'## OpenVINO {tag}: {run_ms:.2f} ms of node time per run, executed nodes '
          f'{sum(v[1] for v in total.values())}')
    print('| node type | ms/run | share | nodes |')
    print('| --- | --- | --- | --- |')
    for kind, (ms, count) in sorted(total.items(), key=lambda kv: -kv[1][0]):
        print(f'| {kind} | {ms:.3f} | {100 * ms / run_ms:.0f}% | {count} |')
    if nodes:
        print('\n| slowest nodes | node type | ms/run |\n| --- | --- | --- |')
        for (name, kind), ms in sorted(by_node.items(), key=lambda kv: -kv[1])[:nodes]:
            print(f'| {name} | {kind} | {ms:.3f} |')
    return {k: (v[0], v[1]) for k, v in total.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='ONNX Runtime / torch.profiler op profile')
    parser.add_argument('name', nargs='?', default='m2', choices=['m0', 'm1', 'm2', 'm3'])
    parser.add_argument('--runs', type=int, default=200, help='profiled ORT runs per model')
    args = parser.parse_args(argv)
    name = args.name
    torch.set_num_threads(1)
    model = build(name)
    with tempfile.TemporaryDirectory() as tmp:
        profile_ort(name + '-deploy', switch_to_deploy(copy.deepcopy(model), 'onnxruntime'), tmp,
                    args.runs)
        profile_ort('mnv3-s-050', build('mnv3-s-050'), tmp, args.runs)
        for backend in ('onnxruntime', 'openvino'):
            path = export_file(switch_to_deploy(copy.deepcopy(model), backend), SHAPE, tmp,
                               f'{name}-{backend}', native=backend == 'openvino')
            # the fused export (one micronet::Program node, the export merges the programs):
            # node by node too
            profile_openvino(f'{name} {backend} deploy export', path, args.runs,
                             nodes=12 if backend == 'openvino' else 0)
        profile_openvino('mnv3-s-050', export_file(build('mnv3-s-050'), SHAPE, tmp, 'mnv3'),
                         args.runs)
    from torch.profiler import ProfilerActivity, profile
    deploy = switch_to_deploy(copy.deepcopy(model), 'native')
    x = torch.randn(1, 3, *SHAPE)
    with torch.no_grad():
        for _ in range(20):
            deploy(x, mode='tensor')
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(50):
                deploy(x, mode='tensor')
    print(f'## torch.profiler, {name} deploy eager, 50 runs')
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=12))


if __name__ == '__main__':
    run_cli(main)

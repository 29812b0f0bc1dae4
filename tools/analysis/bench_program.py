"""Where the time goes inside the fused blocks: MicroNet's stem and stages as layer programs
(``micronet_mm/csrc/program.h``) run by a small C++ harness, outside any framework, with the
header's per-layer profile hook (``MICRONET_PROGRAM_PROFILE``).

    python tools/analysis/bench_program.py [m2] [--blocks 300] [--shape 224 224] [--top 15]
        [--head] [--openvino [--rounds 5]]

The harness (``tools/analysis/bench_program.cpp``) is compiled with the flags of the torch
library (:data:`micronet_mm.csrc.build.FLAGS`) into a temporary folder, runs the chain of
programs ``--blocks`` times on one thread and reports the minimum over those runs of the
chain, of each program and of each run() step (a layer, or a fused pair of depthwise layers;
a Shift-Max that program.h applies inside the depthwise step after it is listed as its
hyper-function, and that step names it): minima, because on a shared machine they move by a
few per cent where means move by tens. It writes nothing but the temporary folder, and checks
each program's output against the PyTorch module it was compiled from before it prints
anything.

``--head`` appends the classifier head as the two programs that ``switch_to_deploy(model,
'openvino')`` makes of it (pool + fc1, fc2; :mod:`micronet_mm.deploy.rewrites.cls_head`), so
that the chain is the whole classifier that the OpenVINO export runs (as one
``micronet::Program`` node: the export merges the three programs,
:mod:`micronet_mm.deploy.rewrites.program_chain`).

``--openvino`` (implies ``--head``) asks what OpenVINO adds around the same programs: the same
model's OpenVINO export (``tools/analysis/benchmark.py``'s, compiled as it compiles it: CPU,
float32, one thread, one stream, called as it calls it), whole, and its unmerged form (three
Program nodes) cut into its backbone (the first Program node) and its head (the other two, fed
by a Parameter), and an empty model (a
``ReduceMean`` of the input: OpenVINO's fixed cost per ``infer()``), each called ``--blocks``
times in each of ``--rounds`` rounds that alternate with the harness; it prints the minima side
by side. The export's logits must match the harness's to the same tolerance.

``--against REV`` compares this working tree's kernels with those of git revision ``REV`` (a
commit, branch or tag of this repository: ``HEAD`` for an uncommitted change): it builds a
second harness from ``REV``'s ``micronet_mm/csrc`` (and ``REV``'s harness source where it has
one), runs the same programs through it, says whether every program's output is bit-for-bit
the same, and alternates ``--rounds`` runs of the two builds (this tree first in odd rounds,
``REV`` first in even ones), printing each build's minima of the chain and of each program and
their ratio. This is the measurement a kernel change needs: both builds in one process
sequence on the same host load, minima of alternating runs.

Random weights (latency does not depend on them), batch 1.
"""
from __future__ import annotations

import argparse
import collections
import io
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from micronet_mm.csrc.program_format import Record, records  # noqa: E402
from micronet_mm.errors import UserError, run_cli  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
CSRC = osp.join(ROOT, 'micronet_mm', 'csrc')
ACTS = {0: '', 1: ' relu6', 2: ' h-swish'}  # LINEAR's act field
TOLERANCE = 1e-4  # parity: max |harness - PyTorch| / max |PyTorch|


def record(program: list[int], layer: int) -> Record:
    return records(program)[layer]


def describe(r: Record) -> str:
    """One layer record as text: ``conv 144->144 g144 5x1 s2,1 relu6``, ``shift-max C144 J2
    K2 S20`` (S0: static), ``add C32``, ``pool C768 relu6 h-swish``, ``linear 768->1024
    h-swish``."""
    if r.kind == 'conv':
        act = ' relu6' if r.act == 1 else ''
        return f'conv {r.c_in}->{r.c_out} g{r.groups} {r.kh}x{r.kw} s{r.sh},{r.sw}{act}'
    if r.kind == 'shift_max':
        return f'shift-max C{r.channels} J{r.shifts} K{r.fusions} S{r.squeeze}'
    if r.kind == 'pool':
        return f'pool C{r.channels}' + ' relu6' * r.relu6 + ' h-swish' * r.hswish
    if r.kind == 'linear':
        return f'linear {r.c_in}->{r.c_out}{ACTS[r.act]}'
    return f'add C{r.channels}'


def module_name(k: int) -> str:
    """The module that program ``k`` of the chain was compiled from (``--head``: 5 and 6)."""
    return 'stem' if k == 0 else f'stages.{k - 1}' if k < 5 else ('head.pool', 'head.fc2')[k - 5]


def category(r: Record) -> str:
    """The kernel family a layer runs in."""
    if r.kind == 'shift_max':
        return 'Shift-Max (hyper-function + fusions)' if r.squeeze else 'static Shift-Max'
    if r.kind == 'add':
        return 'residual add'
    if r.kind in ('pool', 'linear'):
        return 'head (pool, fully connected)'
    if r.kh == 1 and r.kw == 1:
        return 'grouped 1x1'
    return 'depthwise' if r.c_in == r.groups else 'stem (dense / grouped spatial)'


def compile_chain(name: str, shape: tuple[int, int], head: bool = False, model=None):
    """``(modules, [(program, weights, tables)], input)`` of model ``name``'s stem and stages
    (``head``: and its classifier head's two programs); ``model``: that model, built already."""
    from micronet_mm.deploy.rewrites.native_block import (HeadPart, compile_program,
                                                          output_shape)
    from tools.analysis.bench_models import build
    model = build(name) if model is None else model
    backbone = model.backbone
    modules = [backbone.stem] + list(backbone.stages)
    if head:  # as convert_cls_head(programs=True) splits it
        from micronet_mm.deploy.rewrites.cls_head import convert_cls_head
        h = convert_cls_head(model.head)
        modules += [HeadPart(h.pool, [(h.fc1, h.act1)]), HeadPart(None, [(h.fc2, h.act2)])]
    programs, dims = [], (1, 3) + tuple(shape)
    with torch.no_grad():
        for module in modules:
            prog, weights, tables = compile_program(module, dims[1])
            programs.append((prog, weights.float().numpy(), tables.numpy()))
            dims = output_shape(prog, dims)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    return modules, programs, x


def write_input(path: str, programs, x: torch.Tensor) -> None:
    with open(path, 'wb') as f:
        f.write(np.array([len(programs)], np.int64).tobytes())
        for prog, weights, tables in programs:
            f.write(np.array([len(prog), weights.size, tables.size], np.int64).tobytes())
            f.write(np.asarray(prog, np.int64).tobytes())
            f.write(weights.astype(np.float32).tobytes())
            f.write(tables.astype(np.int64).tobytes())
        f.write(np.array(x.shape[1:], np.int64).tobytes())
        f.write(x.numpy().astype(np.float32).tobytes())


def compile_harness(tmp: str, csrc: str = CSRC, source: str | None = None,
                    name: str = 'bench_program') -> str:
    """The harness binary ``tmp/name``, built with the torch library's flags from ``source``
    (default: this tree's ``bench_program.cpp``) against the headers in ``csrc``."""
    from micronet_mm.csrc.build import FLAGS
    compiler = shutil.which('g++') or shutil.which('c++')
    if compiler is None:
        raise UserError('no C++ compiler found: install g++ (apt-get install g++) to run '
                        'tools/analysis/bench_program.py')
    exe = osp.join(tmp, name)
    cmd = [compiler, *FLAGS, '-std=c++17', '-DMICRONET_PROGRAM_PROFILE', '-I', csrc,
           source or osp.join(HERE, 'bench_program.cpp'), '-o', exe]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f'compiling {cmd[-3]} against {csrc} failed: '
                        f'{done.stderr.strip().splitlines()[-1] if done.stderr else cmd}')
    return exe


def revision_harness(rev: str, tmp: str) -> str:
    """The harness built from git revision ``rev``'s ``micronet_mm/csrc`` (and its
    ``bench_program.cpp`` where ``rev`` has one; else this tree's), in ``tmp/rev``."""
    files = ['micronet_mm/csrc', 'tools/analysis/bench_program.cpp']
    listed = subprocess.run(['git', '-C', ROOT, 'ls-tree', '--name-only', rev, '--', *files],
                            capture_output=True, text=True)
    if listed.returncode != 0 or 'micronet_mm/csrc' not in listed.stdout.split():
        raise UserError(f'--against {rev}: git finds no micronet_mm/csrc at that revision in '
                        f'{ROOT}; give a commit, branch or tag of this repository (e.g. HEAD)')
    present = listed.stdout.split()
    done = subprocess.run(['git', '-C', ROOT, 'archive', '--format=tar', rev, '--', *present],
                          capture_output=True)
    if done.returncode != 0:
        raise UserError(f'--against {rev}: git archive failed: '
                        f'{done.stderr.decode(errors="replace").strip()}')
    dest = osp.join(tmp, 'rev')
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(dest, filter='data')
    source = osp.join(dest, 'tools', 'analysis', 'bench_program.cpp')
    return compile_harness(tmp, osp.join(dest, 'micronet_mm', 'csrc'),
                           source if osp.exists(source) else None, 'bench_program_rev')


def parse(stdout: str) -> dict:
    out = {'programs': {}, 'steps': [], 'into': set()}
    for line in stdout.splitlines():
        f = line.split()
        if f[0] == 'chain':
            out['chain_us'] = float(f[1])
        elif f[0] == 'program':
            out['programs'][int(f[1])] = float(f[2])
        elif f[0] == 'layer':
            out['steps'].append((int(f[1]), int(f[2]), int(f[3]), float(f[4])))
        elif f[0] == 'into':
            out['into'].add((int(f[1]), int(f[2])))
    return out


def run_harness(exe: str, tmp: str, blocks: int,
                out: str = 'out.bin') -> tuple[dict, np.ndarray]:
    """The harness's parsed report and every program's output, in order and flattened into one
    array, from ``tmp/in.bin`` (written to ``tmp/out``)."""
    done = subprocess.run([exe, osp.join(tmp, 'in.bin'), osp.join(tmp, out), str(blocks)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f'the harness failed: {done.stderr.strip()}')
    return parse(done.stdout), np.fromfile(osp.join(tmp, out), np.float32)


def relative(y: np.ndarray, ref: np.ndarray) -> float:
    """max |y - ref| / max |ref| (inf where the sizes differ)."""
    y, ref = np.asarray(y).ravel(), np.asarray(ref).ravel()
    if y.size != ref.size:
        return float('inf')
    return float(np.abs(y - ref).max() / max(float(np.abs(ref).max()), 1e-30))


def openvino_parts(model: torch.nn.Module, shape: tuple[int, int], tmp: str) -> dict:
    """``{part: infer request}`` of ``model``'s OpenVINO export, compiled as
    tools/analysis/benchmark.py compiles it: ``whole``, ``backbone`` (its first
    ``micronet::Program`` node), ``head`` (the other two, fed by a Parameter) and ``empty`` (a
    ``ReduceMean`` of the input)."""
    import openvino as ov

    from micronet_mm.runtime.openvino import read_model
    from tools.analysis.bench_models import deployed, export_file, openvino_request
    deployed = deployed(model, 'openvino')
    path = export_file(deployed, shape, tmp, 'model', native=True)
    parts = export_file(deployed, shape, tmp, 'parts', native=True, merge_programs=False)

    def program_nodes(m, file, count=3):
        nodes = [n for n in m.get_ordered_ops() if n.get_type_name() == 'Program']
        if len(nodes) != count:
            raise UserError(f'{file}: {len(nodes)} micronet::Program nodes where the classifier '
                            f'export has {count} (merged: 1; apart: backbone; head pool + fc1; '
                            f'fc2)')
        return nodes
    whole = read_model(path)
    program_nodes(whole, path, 1)
    backbone, head = read_model(parts), read_model(parts)  # cut apart separately
    nodes = program_nodes(backbone, parts)
    backbone = ov.Model([nodes[0].output(0)], backbone.get_parameters(), 'backbone')
    nodes = program_nodes(head, parts)
    feature = ov.opset13.parameter(nodes[0].get_output_shape(0), ov.Type.f32)
    nodes[1].input(0).replace_source_output(feature.output(0))
    head = ov.Model([nodes[2].output(0)], [feature], 'head')
    image = ov.opset13.parameter([1, 3, *shape], ov.Type.f32)
    empty = ov.Model([ov.opset13.reduce_mean(image, [2, 3], True).output(0)], [image], 'empty')
    return {name: openvino_request(m) for name, m in
            (('whole', whole), ('backbone', backbone), ('head', head), ('empty', empty))}


def call_min_us(request, x: np.ndarray, calls: int) -> float:
    """The fastest of ``calls`` calls, called as tools/analysis/benchmark.py calls them."""
    best = float('inf')
    for _ in range(calls):
        start = time.perf_counter()
        request.infer({0: x})
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def compare_openvino(res: dict, requests: dict, exe: str, tmp: str, x: torch.Tensor,
                     feature: torch.Tensor, blocks: int, rounds: int) -> None:
    """Alternate ``rounds`` harness runs with ``blocks`` calls of each OpenVINO part; print
    and store (``res['openvino']``, ``res['harness_parts']``) the minima."""
    inputs = {'whole': x.numpy(), 'backbone': x.numpy(), 'empty': x.numpy(),
              'head': feature.numpy()}
    def parts(run: dict) -> dict:  # the head is the last two programs
        us = [run['programs'][k] for k in sorted(run['programs'])]
        return {'whole': run['chain_us'], 'backbone': sum(us[:-2]), 'head': sum(us[-2:])}
    ov_us = {name: float('inf') for name in requests}
    harness = parts(res)
    for _ in range(rounds):
        for name, request in requests.items():
            ov_us[name] = min(ov_us[name], call_min_us(request, inputs[name], blocks))
        run = parts(run_harness(exe, tmp, blocks)[0])
        harness = {name: min(us, run[name]) for name, us in harness.items()}
    labels = {'whole': 'whole classifier (1 Program node; harness: 7 programs)',
              'backbone': 'backbone: stem + stages (1 Program node; harness: 5 programs)',
              'head': 'head: pool + fc1, fc2 (2 Program nodes)',
              'empty': 'empty model (ReduceMean of the input)'}
    print(f'\nOpenVINO against the harness, minima over {rounds} alternating rounds of '
          f'{blocks} calls (harness: the chain, or the sum of its programs\' minima); logits '
          f'match the harness to {res["openvino_parity"]:.1e}\n\n'
          f'| part | harness us | OpenVINO us | OpenVINO - harness |\n| --- | --- | --- | --- |')
    for name, us in ov_us.items():
        if name in harness:
            print(f'| {labels[name]} | {harness[name]:.1f} | {us:.1f} | '
                  f'{us - harness[name]:+.1f} |')
        else:
            print(f'| {labels[name]} | - | {us:.1f} | - |')
    res['openvino'], res['harness_parts'] = ov_us, harness


def compare_builds(res: dict, flat: np.ndarray, exe: str, other: str, tmp: str, rev: str,
                   blocks: int, rounds: int) -> None:
    """Run the ``rev`` build ``other`` on the same programs, compare its outputs with this
    tree's (``flat``), then alternate ``rounds`` runs of the two; print and store
    (``res['against']``) both builds' minima of the chain and of each program."""
    run, theirs = run_harness(other, tmp, blocks, 'out_rev.bin')
    equal = bool(np.array_equal(theirs, flat))
    diff = relative(flat, theirs)
    if not diff <= TOLERANCE:
        raise UserError(f'--against {rev}: the two builds\' outputs differ by {diff:.3g} '
                        f'(relative; limit {TOLERANCE}): they do not compute the same model')
    def parts(r: dict) -> dict:
        return {'chain': r['chain_us'], **r['programs']}
    best = [parts(res), parts(run)]
    for i in range(rounds):
        for which in ((0, 1) if i % 2 else (1, 0)):  # ABBA: drift hits both alike
            new = parts(run_harness((exe, other)[which], tmp, blocks,
                                    ('out.bin', 'out_rev.bin')[which])[0])
            best[which] = {k: min(us, new[k]) for k, us in best[which].items()}
    print(f'\nThis tree against {rev}: minima over {rounds} alternating rounds of {blocks} runs '
          f'of each build; outputs ' + ('bit-for-bit equal' if equal else
                                        f'differ by {diff:.1e} (relative)') +
          f'\n\n| part | this tree us | {rev} us | this tree / {rev} |\n| --- | --- | --- | --- |')
    for k, us in best[0].items():
        label = k if k == 'chain' else f'{k}: {module_name(k)}'
        print(f'| {label} | {us:.1f} | {best[1][k]:.1f} | {us / best[1][k]:.3f} |')
    res['against'] = {'rev': rev, 'equal': equal, 'relative': diff, 'this': best[0],
                      'other': best[1]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('name', nargs='?', default='m2', choices=['m0', 'm1', 'm2', 'm3'])
    parser.add_argument('--blocks', type=int, default=300, help='timed runs of the chain')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    parser.add_argument('--top', type=int, default=15, help='slowest steps to list')
    parser.add_argument('--head', action='store_true',
                        help="also the classifier head's two programs (pool + fc1, fc2)")
    parser.add_argument('--openvino', action='store_true',
                        help='also time the OpenVINO export of the same model, cut into parts')
    parser.add_argument('--rounds', type=int, default=5,
                        help='--openvino / --against: alternating rounds')
    parser.add_argument('--against', metavar='REV',
                        help="also build the harness from git revision REV's kernels (HEAD: "
                             'the last commit) and time the two builds in alternating rounds')
    args = parser.parse_args(argv)
    if args.blocks < 1:
        raise UserError(f'--blocks {args.blocks}: give at least 1')
    if args.rounds < 1:
        raise UserError(f'--rounds {args.rounds}: give at least 1')
    torch.set_num_threads(1)
    from tools.analysis.bench_models import build
    model = build(args.name)
    with tempfile.TemporaryDirectory() as tmp:
        # the export first: compile_chain folds the head's BatchNorm in place
        requests = openvino_parts(model, tuple(args.shape), tmp) if args.openvino else None
        modules, programs, x = compile_chain(args.name, tuple(args.shape),
                                             args.head or args.openvino, model)
        with torch.no_grad():
            outputs = [x]
            for module in modules:
                outputs.append(module(outputs[-1]))
        exe = compile_harness(tmp)
        other = revision_harness(args.against, tmp) if args.against else None
        write_input(osp.join(tmp, 'in.bin'), programs, x)
        res, flat = run_harness(exe, tmp, args.blocks)
        # every program's output against its module's: with random weights the logits alone
        # hardly depend on the backbone (a harness whose depthwise layers were compiled out
        # still matched them to 1e-6)
        ends = np.cumsum([o.numel() for o in outputs[1:]])
        ys = np.split(flat, ends[:-1])
        y = ys[-1]
        res['parity'] = max(relative(yk, ref.numpy()) for yk, ref in zip(ys, outputs[1:]))
        if flat.size != ends[-1] or not res['parity'] <= TOLERANCE:
            raise UserError(f'the harness output differs from PyTorch by {res["parity"]:.3g} '
                            f'(relative; limit {TOLERANCE}): program.h and the modules '
                            f'disagree')
        if requests is not None:
            res['openvino_parity'] = relative(requests['whole'].infer({0: x.numpy()})[0], y)
            if not res['openvino_parity'] <= TOLERANCE:
                raise UserError(f'the OpenVINO export\'s logits differ from the harness\'s by '
                                f'{res["openvino_parity"]:.3g} (relative; limit {TOLERANCE})')
        report = _report(args, res, programs)
        if requests is not None:  # the backbone's output feeds the head
            compare_openvino(report, requests, exe, tmp, x, outputs[-3], args.blocks,
                             args.rounds)
        if other is not None:
            compare_builds(report, flat, exe, other, tmp, args.against, args.blocks,
                           args.rounds)
    return report


def _report(args, res: dict, programs) -> dict:
    """Print the harness's tables; ``res`` with ``families`` added."""
    print(f'# {args.name}, {args.shape[0]}x{args.shape[1]}: layer programs in the C++ harness, '
          f'minimum of {args.blocks} runs, one thread; output matches PyTorch to '
          f'{res["parity"]:.1e} (relative)')
    chain = res['chain_us']
    print(f'\nchain {chain:.1f} us\n\n| program | module | us | share |\n| --- | --- | --- | --- |')
    for k, us in sorted(res['programs'].items()):
        print(f'| {k} | {module_name(k)} | {us:.1f} | {100 * us / chain:.0f}% |')
    rows, groups = [], collections.defaultdict(lambda: [0.0, 0])
    for k, first, last, us in res['steps']:
        prog = programs[k][0]
        text = ' + '.join(describe(record(prog, layer)) for layer in range(first, last + 1))
        kind = category(record(prog, first))
        if last > first:
            kind += ' (fused pairs)'
        if (k, first) in res['into']:  # program.h: its fusion pass runs in the next step
            text += ' (hyper-function; applied by the next step)'
        if (k, first - 1) in res['into']:
            text = 'the Shift-Max before it + ' + text
        rows.append((us, k, first, text))
        groups[kind][0] += us
        groups[kind][1] += 1
    steps_total = sum(v[0] for v in groups.values())
    print('\n| kernel family | us | share of the steps | steps |\n| --- | --- | --- | --- |')
    for kind, (us, n) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        print(f'| {kind} | {us:.1f} | {100 * us / steps_total:.0f}% | {n} |')
    print(f'\nsteps total {steps_total:.1f} us; the rest of the chain ({chain - steps_total:.1f} '
          f'us) is run()\'s set-up of each call and layer (the plan is made once) and the '
          f'profile hook')
    print(f'\n| slowest steps | program | layer | us |\n| --- | --- | --- | --- |')
    for us, k, first, text in sorted(rows, reverse=True)[:args.top]:
        print(f'| {text} | {k} | {first} | {us:.1f} |')
    res['families'] = {k: v[0] for k, v in groups.items()}
    return res


if __name__ == '__main__':
    run_cli(main)

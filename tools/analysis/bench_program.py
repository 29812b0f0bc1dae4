"""Where the time goes inside the fused blocks: MicroNet's stem and stages as layer programs
(``micronet_mm/csrc/program.h``) run by a small C++ harness, outside any framework, with the
header's per-layer profile hook (``MICRONET_PROGRAM_PROFILE``).

    python tools/analysis/bench_program.py [m2] [--blocks 300] [--shape 224 224] [--top 15]
        [--head]

The harness (``tools/analysis/bench_program.cpp``) is compiled with the flags of the torch
library (:data:`micronet_mm.csrc.build.FLAGS`) into a temporary folder, runs the chain of
programs ``--blocks`` times on one thread and reports the minimum over those runs of the
chain, of each program and of each run() step (a layer, or a fused pair of depthwise layers;
a Shift-Max that program.h applies inside the depthwise step after it is listed as its
hyper-function, and that step names it). ``--head`` appends the classifier head as the two
programs that ``switch_to_deploy(model, 'openvino')`` makes of it (pool + fc1, fc2;
:mod:`micronet_mm.deploy.rewrites.cls_head`), so that the chain is the whole classifier that
the OpenVINO export runs as its three ``micronet.Program`` nodes:
minima, because on a shared machine they move by a few per cent where means move by tens. It
writes nothing but the temporary folder, and checks the chain's output against the PyTorch
modules it was compiled from before it prints anything.

Random weights (latency does not depend on them), batch 1.
"""
from __future__ import annotations

import argparse
import collections
import os.path as osp
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from micronet_mm.errors import UserError, run_cli  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
CSRC = osp.join(osp.dirname(osp.dirname(HERE)), 'micronet_mm', 'csrc')
CONV, SHIFT_MAX, ADD, POOL, LINEAR = 1, 2, 3, 4, 5  # program.h's ops
ACTS = {0: '', 1: ' relu6', 2: ' h-swish'}  # LINEAR's act field
FIELDS = 17
TOLERANCE = 1e-4  # parity: max |harness - PyTorch| / max |PyTorch|


def record(program: list[int], layer: int) -> list[int]:
    return program[2 + layer * FIELDS: 2 + (layer + 1) * FIELDS]


def describe(r: list[int]) -> str:
    """One layer record as text: ``conv 144->144 g144 5x1 s2,1 relu6``, ``shift-max C144 J2
    K2 S20`` (S0: static), ``add C32``, ``pool C768 relu6 h-swish``, ``linear 768->1024
    h-swish``."""
    if r[0] == CONV:
        act = ' relu6' if r[15] == 1 else ''
        return f'conv {r[4]}->{r[5]} g{r[6]} {r[7]}x{r[8]} s{r[9]},{r[10]}{act}'
    if r[0] == SHIFT_MAX:
        return f'shift-max C{r[4]} J{r[5]} K{r[6]} S{r[7]}'
    if r[0] == POOL:
        return f'pool C{r[4]}' + ' relu6' * r[5] + ' h-swish' * r[6]
    if r[0] == LINEAR:
        return f'linear {r[4]}->{r[5]}{ACTS[r[6]]}'
    return f'add C{r[4]}'


def category(r: list[int]) -> str:
    """The kernel family a layer runs in."""
    if r[0] == SHIFT_MAX:
        return 'Shift-Max (hyper-function + fusions)' if r[7] else 'static Shift-Max'
    if r[0] == ADD:
        return 'residual add'
    if r[0] in (POOL, LINEAR):
        return 'head (pool, fully connected)'
    if r[7] == 1 and r[8] == 1:
        return 'grouped 1x1'
    return 'depthwise' if r[4] == r[6] else 'stem (dense / grouped spatial)'


def compile_chain(name: str, shape: tuple[int, int], head: bool = False):
    """``(modules, [(program, weights, tables)], input)`` of model ``name``'s stem and stages
    (``head``: and its classifier head's two programs)."""
    from micronet_mm.deploy.rewrites.native_block import (HeadPart, compile_program,
                                                          output_shape)
    from tools.analysis.benchmark import build
    model = build(name)
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


def compile_harness(tmp: str) -> str:
    """The harness binary, built in ``tmp`` with the torch library's flags."""
    from micronet_mm.csrc.build import FLAGS
    compiler = shutil.which('g++') or shutil.which('c++')
    if compiler is None:
        raise UserError('no C++ compiler found: install g++ (apt-get install g++) to run '
                        'tools/analysis/bench_program.py')
    exe = osp.join(tmp, 'bench_program')
    cmd = [compiler, *FLAGS, '-std=c++17', '-DMICRONET_PROGRAM_PROFILE', '-I', CSRC,
           osp.join(HERE, 'bench_program.cpp'), '-o', exe]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f'compiling tools/analysis/bench_program.cpp failed: '
                        f'{done.stderr.strip().splitlines()[-1] if done.stderr else cmd}')
    return exe


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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('name', nargs='?', default='m2', choices=['m0', 'm1', 'm2', 'm3'])
    parser.add_argument('--blocks', type=int, default=300, help='timed runs of the chain')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    parser.add_argument('--top', type=int, default=15, help='slowest steps to list')
    parser.add_argument('--head', action='store_true',
                        help="also the classifier head's two programs (pool + fc1, fc2)")
    args = parser.parse_args(argv)
    if args.blocks < 1:
        raise UserError(f'--blocks {args.blocks}: give at least 1')
    torch.set_num_threads(1)
    modules, programs, x = compile_chain(args.name, tuple(args.shape), args.head)
    with torch.no_grad():
        ref = x
        for module in modules:
            ref = module(ref)
    with tempfile.TemporaryDirectory() as tmp:
        exe = compile_harness(tmp)
        write_input(osp.join(tmp, 'in.bin'), programs, x)
        done = subprocess.run([exe, osp.join(tmp, 'in.bin'), osp.join(tmp, 'out.bin'),
                               str(args.blocks)], capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f'the harness failed: {done.stderr.strip()}')
        y = np.fromfile(osp.join(tmp, 'out.bin'), np.float32)
    res = parse(done.stdout)
    ref = ref.numpy().ravel()
    res['parity'] = float(np.abs(y - ref).max() / max(float(np.abs(ref).max()), 1e-30)) \
        if y.size == ref.size else float('inf')
    if not res['parity'] <= TOLERANCE:
        raise UserError(f'the harness output differs from PyTorch by {res["parity"]:.3g} '
                        f'(relative; limit {TOLERANCE}): program.h and the modules disagree')
    print(f'# {args.name}, {args.shape[0]}x{args.shape[1]}: layer programs in the C++ harness, '
          f'minimum of {args.blocks} runs, one thread; output matches PyTorch to '
          f'{res["parity"]:.1e} (relative)')
    chain = res['chain_us']
    print(f'\nchain {chain:.1f} us\n\n| program | module | us | share |\n| --- | --- | --- | --- |')
    for k, us in sorted(res['programs'].items()):
        module = 'stem' if k == 0 else f'stages.{k - 1}' if k < 5 else \
            ('head.pool', 'head.fc2')[k - 5]
        print(f'| {k} | {module} | {us:.1f} | {100 * us / chain:.0f}% |')
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

"""Dynamic Shift-Max alone: the fused C++ operator against the reference module and the
deploy forms, over every Shift-Max layer of a MicroNet at its real input shapes, in one
interleaved run (one thread). Prints ms per pass over all layers and ratios.

    python tools/analysis/bench_shift_max.py [--arch m2] [--shape 224 224] [--batch 1]
        [--rounds 15] [--iters 10]

Rows: ``reference`` (:class:`DynamicShiftMax`, fused path off), ``deploy FastShiftMax`` (the
standard-op deploy form), ``deploy FusedShiftMax`` (one ``micronet::shift_max_dynamic`` call per
layer), ``fused module`` (:class:`DynamicShiftMax` with the fused path on: hyper-function in
torch ops, Eq. 4 in C++), and ``fusion only`` (``micronet::shift_max`` with precomputed
coefficients: the kernel alone). ``--train`` adds forward + backward of the same layers.

``--train-models m2 mnv3-s-075`` adds whole training steps (``bench_models.train_throughput``:
forward + backward + SGD, one thread) with and without the fused operator: images/s and the
peak memory of the step, each configuration in a fresh process (its peak RSS, ``VmHWM`` reset
just before the model is built, minus the RSS then; not ``ru_maxrss``, which a child inherits
from its parent across ``exec``; glibc's mmap threshold fixed so that freed activations leave
RSS). ``bench_models.train_step_stats`` runs each.

``--latency`` adds whole classifiers, batch 1: M2 and M3 as built and in PyTorch deploy mode
(``deploy programs``: the stem and stages as native programs, the backend's default where the
operators are built; and per layer with ``FusedShiftMax`` or ``FastShiftMax``), against mmpretrain's MobileNetV3-Small x0.5 / x0.75,
interleaved, with the ratios of the issue's targets.
"""
from __future__ import annotations

import argparse
import os.path as osp
import statistics
import sys
from collections.abc import Callable, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from tools.analysis.bench_models import build, measure, train_step_stats  # noqa: E402


def layer_inputs(arch: str, shape: Sequence[int], batch: int
                 ) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Every :class:`DynamicShiftMax` of backbone ``arch`` (random weights) with the input it
    gets from a random image batch."""
    from micronet_mm.models.backbones.micronet import MicroNet
    from micronet_mm.ops import DynamicShiftMax, fused_shift_max
    model = MicroNet(arch).eval()
    found = []
    hooks = [m.register_forward_pre_hook(lambda m, args: found.append((m, args[0].clone())))
             for m in model.modules() if isinstance(m, DynamicShiftMax)]
    with torch.no_grad(), fused_shift_max.use_fused(False):
        model(torch.randn(batch, 3, *shape))
    for h in hooks:
        h.remove()
    return found


def runners(layers, train: bool) -> dict[str, Callable[[], object]]:
    from micronet_mm.deploy.rewrites.shift_max import FastShiftMax, FusedShiftMax
    from micronet_mm.ops import fused_shift_max
    fast = [(FastShiftMax(m), x) for m, x in layers]
    fused = [(FusedShiftMax(m), x) for m, x in layers]
    coef = [(m.coefficients(x).flatten(3).permute(2, 0, 1, 3).contiguous(), m.index, x)
            for m, x in layers]

    def run(pairs, flag=None):
        def go():
            with torch.no_grad(), fused_shift_max.use_fused(bool(flag)):
                for m, x in pairs:
                    m(x)
        return go

    def kernel():
        with torch.no_grad():
            for a, idx, x in coef:
                torch.ops.micronet.shift_max(x, a, idx)

    fns = {'reference': run(layers, False), 'deploy FastShiftMax': run(fast),
           'deploy FusedShiftMax': run(fused), 'fused module': run(layers, True),
           'fusion only': kernel}
    if train:
        xs = [(m, x.clone().requires_grad_()) for m, x in layers]

        def step(flag):
            def go():  # bench_models.measure runs under no_grad
                with torch.enable_grad(), fused_shift_max.use_fused(flag):
                    for m, x in xs:
                        m(x).sum().backward()
            return go
        fns.update({'train reference': step(False), 'train fused': step(True)})
    return fns


LATENCY_PAIRS = (('m2', 'mnv3-s-050'), ('m3', 'mnv3-s-075'))


def latency_runners(shape: Sequence[int]) -> dict[tuple[str, str], Callable[[], object]]:
    """Classifiers (bench_models.build) as built, deploy as programs, deploy per layer fused and
    per layer standard-op, batch 1."""
    import copy

    from micronet_mm.deploy import switch_to_deploy
    from micronet_mm.deploy.backends.native import per_layer
    x = torch.randn(1, 3, *shape)
    fns = {}
    for name, base in LATENCY_PAIRS:
        model = build(name)
        fns[(name, 'eager')] = lambda m=model: m(x, mode='tensor')
        programs = switch_to_deploy(copy.deepcopy(model), 'native')
        fns[(name, 'deploy programs')] = lambda m=programs: m(x, mode='tensor')
        with per_layer():
            fused = switch_to_deploy(copy.deepcopy(model), 'native')
        fns[(name, 'deploy FusedShiftMax')] = lambda m=fused: m(x, mode='tensor')
        fast = switch_to_deploy(copy.deepcopy(model))  # the default: standard operators
        fns[(name, 'deploy FastShiftMax')] = lambda m=fast: m(x, mode='tensor')
        baseline = build(base)
        fns[(base, 'eager')] = lambda m=baseline: m(x, mode='tensor')
    return fns


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='m2')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--train', action='store_true', help='also forward + backward')
    parser.add_argument('--latency', action='store_true',
                        help='also whole classifiers against MobileNetV3-Small')
    parser.add_argument('--train-models', nargs='*', default=[],
                        help='benchmark.py model keys for whole training steps, e.g. m2 mnv3-s-075')
    parser.add_argument('--train-batch', type=int, default=64)
    parser.add_argument('--train-steps', type=int, default=2)
    parser.add_argument('--train-rounds', type=int, default=2,
                        help='alternating rounds of the training configurations')
    args = parser.parse_args(argv)
    from micronet_mm.errors import UserError
    from micronet_mm.ops import fused_shift_max
    if not fused_shift_max.available():
        raise UserError('the fused Shift-Max operator is not built; run: bash tools/setup_env.sh')
    torch.set_num_threads(1)
    layers = layer_inputs(args.arch, args.shape, args.batch)
    times = measure(runners(layers, args.train), args.rounds, args.iters, warmup=1)[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med['reference']
    print(f'{args.arch}: {len(layers)} Dynamic Shift-Max layers, batch {args.batch}, '
          f'{args.shape[0]}x{args.shape[1]}, 1 thread; ms per pass over all layers')
    print('| form | ms | ÷ reference | ÷ deploy FastShiftMax |\n| --- | --- | --- | --- |')
    for key, ms in med.items():
        ref = med['train reference'] if key.startswith('train') else base
        fast = '-' if key.startswith('train') else f"{ms / med['deploy FastShiftMax']:.2f}"
        print(f'| {key} | {ms:.3f} | {ms / ref:.2f} | {fast} |')
    if args.latency:
        times = measure(latency_runners(args.shape), args.rounds, args.iters, warmup=3)[0]
        lat = {k: statistics.median(v) for k, v in times.items()}
        print(f'\nWhole classifiers, batch 1, {args.shape[0]}x{args.shape[1]}, 1 thread '
              f'(ms; ratio to the MobileNetV3-Small of similar accuracy, eager)')
        print('| model | form | ms | ÷ MobileNetV3 |\n| --- | --- | --- | --- |')
        for name, base in LATENCY_PAIRS:
            for form in ('eager', 'deploy FastShiftMax', 'deploy FusedShiftMax',
                         'deploy programs'):
                ms = lat[(name, form)]
                print(f'| {name} | {form} | {ms:.2f} | {ms / lat[(base, "eager")]:.2f} |')
                med[f'{name} {form} ms'] = ms
            print(f'| {base} | eager | {lat[(base, "eager")]:.2f} | 1.00 |')
            med[f'{base} eager ms'] = lat[(base, 'eager')]
    if args.train_models:
        train = {}
        configs = [(n, f) for n in args.train_models
                   for f in ((True, False) if n.startswith('m') and n[1:].isdigit() else (False,))]
        for _ in range(args.train_rounds):  # alternate, so that load changes hit all alike
            for name, fused in configs:
                res = train_step_stats(name, fused=fused, batch=args.train_batch,
                                       steps=args.train_steps, shape=args.shape)
                train.setdefault((name, fused), []).append(res)
        print(f'\nTraining step (forward + backward + SGD), batch {args.train_batch}, '
              f'{args.shape[0]}x{args.shape[1]}, 1 thread, {args.train_steps} steps, median of '
              f'{args.train_rounds} rounds')
        print('| model | Shift-Max | images/s | peak MiB | fused calls |\n'
              '| --- | --- | --- | --- | --- |')
        for (name, fused), runs in train.items():
            ips = statistics.median(r['images_per_s'] for r in runs)
            mib = statistics.median(r['peak_mib'] for r in runs)
            kind = 'fused' if fused else ('reference' if name[1:].isdigit() else '-')
            print(f'| {name} | {kind} | {ips:.1f} | {mib:.0f} | {runs[0]["fused_calls"]} |')
            med[f'train {name} {kind} images/s'] = ips
            med[f'train {name} {kind} peak MiB'] = mib
    return med


if __name__ == '__main__':
    from micronet_mm.errors import run_cli
    run_cli(main)

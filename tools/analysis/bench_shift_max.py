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
"""
from __future__ import annotations

import argparse
import copy
import os.path as osp
import statistics
import sys
import time
from collections.abc import Callable, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402


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


def measure(fns: dict[str, Callable[[], object]], rounds: int, iters: int) -> dict[str, float]:
    """Median over interleaved rounds of ms per call."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for key, fn in fns.items():
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            times[key].append((time.perf_counter() - t) / iters * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


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
            def go():
                with fused_shift_max.use_fused(flag):
                    for m, x in xs:
                        m(x).sum().backward()
            return go
        fns.update({'train reference': step(False), 'train fused': step(True)})
    return fns


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='m2')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--train', action='store_true', help='also forward + backward')
    args = parser.parse_args(argv)
    from micronet_mm.errors import UserError
    from micronet_mm.ops import fused_shift_max
    if not fused_shift_max.available():
        raise UserError('the fused Shift-Max operator is not built; run: bash tools/setup_env.sh')
    torch.set_num_threads(1)
    layers = layer_inputs(args.arch, args.shape, args.batch)
    med = measure(runners(layers, args.train), args.rounds, args.iters)
    base = med['reference']
    print(f'{args.arch}: {len(layers)} Dynamic Shift-Max layers, batch {args.batch}, '
          f'{args.shape[0]}x{args.shape[1]}, 1 thread; ms per pass over all layers')
    print('| form | ms | ÷ reference | ÷ deploy FastShiftMax |\n| --- | --- | --- | --- |')
    for key, ms in med.items():
        ref = med['train reference'] if key.startswith('train') else base
        fast = '-' if key.startswith('train') else f"{ms / med['deploy FastShiftMax']:.2f}"
        print(f'| {key} | {ms:.3f} | {ms / ref:.2f} | {fast} |')
    return med


if __name__ == '__main__':
    from micronet_mm.errors import run_cli
    run_cli(main)

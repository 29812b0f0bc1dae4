"""Which deploy form each edge runtime runs fastest: MicroNet classifiers in MNN and ncnn, in
each standard-operator deploy form that runtime converts, timed in one interleaved run.

    python tools/analysis/bench_edge_forms.py [--models m2 m3] [--rounds 20] [--iters 10]
        [--shape 224 224]

Forms: ``onnxruntime`` (``switch_to_deploy(model, 'onnxruntime')``: channel gathers, 5-D
shuffles, merged depthwise convolutions with bias maps; MNN only, pnnx leaves its gathers
unconverted for ncnn) and ``edge`` (``switch_to_deploy(model, 'ncnn')``, the same form as
``'mnn'``: 4-D tensors only, :mod:`micronet_mm.deploy.rewrites.four_d`). Each file is
converted as ``tools/deployment/export_onnx.py --backend mnn|ncnn`` converts it and checked
against PyTorch (relative 1e-4) before it is timed. One thread, batch 1; prints the median
over rounds of the per-call mean and the fastest single call, in ms, and each form's ratio to
the ``edge`` form in the same runtime (docs/deploy.md, edge runtimes).
"""
from __future__ import annotations

import argparse
import os.path as osp
import statistics
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from micronet_mm.errors import run_cli  # noqa: E402
from tools.analysis.bench_models import MICRONET_MID, build, deployed, measure  # noqa: E402
from tools.analysis.benchmark import edge_runner  # noqa: E402

#: (runtime, form) pairs measured; the deploy backend of each form
CASES = (('mnn', 'onnxruntime'), ('mnn', 'edge'), ('ncnn', 'edge'))
BACKEND = {'onnxruntime': 'onnxruntime', 'edge': 'ncnn'}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MicroNet deploy forms in MNN and ncnn')
    parser.add_argument('--models', nargs='+', default=['m2', 'm3'], choices=list(MICRONET_MID))
    parser.add_argument('--rounds', type=int, default=20, help='interleaved rounds')
    parser.add_argument('--iters', type=int, default=10, help='calls per case per round')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    shape = tuple(args.shape)
    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = build(name)
            x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                ref = model(x, None, mode='tensor').numpy()
            for runtime, form in CASES:
                run = edge_runner(runtime, deployed(model, BACKEND[form]), shape, tmp,
                                  f'{name}-{runtime}-{form}')
                err = float(np.abs(run()[0] - ref).max() / np.abs(ref).max())
                if err > 1e-4:
                    raise RuntimeError(f'{name} {form} in {runtime}: {err:.3g} from PyTorch')
                fns[(name, runtime, form)] = run
        times, fastest = measure(fns, args.rounds, args.iters, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f'{shape[0]}x{shape[1]}, batch 1, 1 thread, median of {args.rounds} interleaved '
             f'rounds x {args.iters} calls (fastest call in brackets); ratio to the edge form',
             '', '| model | runtime | form | ms | ratio |', '| --- | --- | --- | --- | --- |']
    for (name, runtime, form), ms in med.items():
        ratio = ms / med[(name, runtime, 'edge')]
        best = fastest[(name, runtime, form)]
        lines.append(f'| {name} | {runtime} | {form} | {ms:.2f} ({best:.2f}) | {ratio:.2f}x |')
    print('\n'.join(lines))
    return dict(median=med, fastest=fastest)


if __name__ == '__main__':
    run_cli(main)

"""CPU latency of MicroNet M0-M3 (as trained and in deploy mode) against mmpretrain's
MobileNetV3-Small x0.5 / x0.75 / x1.0, in PyTorch eager and ONNX Runtime, in one run; plus
training throughput. Random weights (latency does not depend on them).

    python tools/analysis/benchmark.py [--rounds R] [--iters I] [--models m2 mnv3-s-050 ...]
        [--train-steps S] [--out-dir DIR]

Latency: one thread (``torch.set_num_threads(1)``; ONNX Runtime intra/inter-op threads 1),
batch 1, 224x224. Every round times each (model, runtime) for ``--iters`` calls, in turn, so
that load changes on a shared machine hit all alike; the table gives the median over rounds of
the per-call mean and the interquartile range. ONNX Runtime (every model with the same session
options: ORT_ENABLE_ALL graph optimisation, sequential execution, 1 intra-op and 1 inter-op
thread, CPU provider) runs the plain export of the model
as trained and the export of the deploy model (``backend='onnxruntime'``). Training throughput:
images/s of forward + backward + SGD step at batch 64 (one thread, 224x224).

Writes ``DIR/benchmark.md`` (the tables) and ``DIR/latency_vs_top1.png`` (published ImageNet
top-1 against measured latency).
"""
from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

#: published ImageNet top-1 (MicroNet ICCV paper Table 6; MobileNetV3 paper / issue 6)
TOP1 = {'m0': 46.6, 'm1': 51.4, 'm2': 59.4, 'm3': 62.5,
        'mnv3-s-050': 57.9, 'mnv3-s-075': 65.2, 'mnv3-s-100': 66.7}
NAMES = {'m0': 'MicroNet-M0', 'm1': 'MicroNet-M1', 'm2': 'MicroNet-M2', 'm3': 'MicroNet-M3',
         'mnv3-s-050': 'MobileNetV3-Small x0.5', 'mnv3-s-075': 'MobileNetV3-Small x0.75',
         'mnv3-s-100': 'MobileNetV3-Small x1.0'}
MNV3_ARCH = {'mnv3-s-050': ('small_050', 288), 'mnv3-s-075': ('small_075', 432),
             'mnv3-s-100': ('small', 576)}
MICRONET_MID = {'m0': 640, 'm1': 960, 'm2': 1024, 'm3': 1024}
RATIOS = [('m2', 'mnv3-s-050'), ('m3', 'mnv3-s-075'), ('m1', 'mnv3-s-050'),
          ('m0', 'mnv3-s-050')]
DEFAULT_MODELS = list(TOP1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MicroNet vs MobileNetV3-Small CPU benchmark')
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS, choices=DEFAULT_MODELS)
    parser.add_argument('--rounds', type=int, default=15, help='interleaved rounds')
    parser.add_argument('--iters', type=int, default=20, help='calls per model per round')
    parser.add_argument('--warmup', type=int, default=10, help='untimed calls per model')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    parser.add_argument('--train-steps', type=int, default=3,
                        help='timed training steps per model (0: skip training)')
    parser.add_argument('--train-batch', type=int, default=64)
    parser.add_argument('--train-models', nargs='+', default=['m0', 'm1', 'm2', 'm3',
                                                              'mnv3-s-075'],
                        choices=DEFAULT_MODELS)
    parser.add_argument('--no-onnx', action='store_true', help='PyTorch eager only')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    return parser.parse_args(argv)


def build(name: str) -> torch.nn.Module:
    """The ImageNet classifier (1000 classes) ``name``, eval mode, random weights."""
    import micronet_mm.models  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        if name in MNV3_ARCH:
            arch, channels = MNV3_ARCH[name]
            cfg = dict(type='ImageClassifier', backbone=dict(type='MobileNetV3', arch=arch),
                       neck=dict(type='GlobalAveragePooling'),
                       head=dict(type='StackedLinearClsHead', num_classes=1000,
                                 in_channels=channels, mid_channels=[1024], dropout_rate=0.2,
                                 act_cfg=dict(type='HSwish')))
        else:
            cfg = dict(type='MicroNetImageClassifier', backbone=dict(type='MicroNet', arch=name),
                       head=dict(type='MicroNetClsHead', num_classes=1000, in_channels='auto',
                                 mid_channels=MICRONET_MID[name], dropout=0.1))
        return MODELS.build(cfg).eval()


def onnx_session(model: torch.nn.Module, shape, tmp: str, tag: str, profile: bool = False):
    """Export ``model`` (batch 1) into ``tmp`` and open it with the project's ORT options
    (``profile``: ONNX Runtime's profiler on, writing ``tmp/TAG_*.json``)."""
    from tools.deployment.export_onnx import export, ort_session
    path = osp.join(tmp, f'{tag}.onnx')
    export(model, path, shape, dynamic_batch=False)
    return ort_session(path, profile_prefix=osp.join(tmp, tag) if profile else None)


def runners(names, shape, onnx: bool, tmp: str) -> dict:
    """``{(model, runtime): callable}`` for every combination measured."""
    from micronet_mm.deploy import switch_to_deploy
    x = torch.randn(1, 3, *shape)
    xn = x.numpy()
    out = {}
    for name in names:
        model = build(name)
        out[(name, 'eager')] = lambda m=model: m(x, mode='tensor')
        if name in MICRONET_MID:
            deploy = switch_to_deploy(copy.deepcopy(model), 'pytorch')
            out[(name, 'eager deploy')] = lambda m=deploy: m(x, mode='tensor')
        if onnx:
            sess = onnx_session(model, shape, tmp, name)
            out[(name, 'ort')] = lambda s=sess: s.run(None, {'input': xn})
            if name in MICRONET_MID:
                dep = switch_to_deploy(copy.deepcopy(model), 'onnxruntime')
                sess_d = onnx_session(dep, shape, tmp, name + '-deploy')
                out[(name, 'ort deploy')] = lambda s=sess_d: s.run(None, {'input': xn})
    return out


def measure(fns: dict, rounds: int, iters: int, warmup: int) -> dict:
    """``{key: [ms per call, one per round]}``, rounds interleaved over the keys."""
    times = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        for _ in range(rounds):
            for key, fn in fns.items():
                t = time.perf_counter()
                for _ in range(iters):
                    fn()
                times[key].append((time.perf_counter() - t) / iters * 1e3)
    return times


def train_throughput(name: str, batch: int, steps: int, shape) -> float:
    """Images/s of forward + backward + SGD step (one warm-up step untimed)."""
    model = build(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *shape)
    y = torch.randint(0, 1000, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x, mode='tensor'), y).backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def stats(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return statistics.median(values), q[0], q[2]


def latency_table(times: dict, names) -> tuple[str, dict]:
    runtimes = ['eager', 'eager deploy', 'ort', 'ort deploy']
    present = [r for r in runtimes if any((n, r) in times for n in names)]
    med = {k: stats(v)[0] for k, v in times.items()}
    lines = ['| model (top-1) | ' + ' | '.join(f'{r} ms (IQR)' for r in present) + ' |',
             '| --- |' + ' --- |' * len(present)]
    for n in names:
        cells = []
        for r in present:
            if (n, r) in times:
                m, lo, hi = stats(times[(n, r)])
                cells.append(f'{m:.2f} ({lo:.2f}-{hi:.2f})')
            else:
                cells.append('-')
        lines.append(f'| {NAMES[n]} ({TOP1[n]}) | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines), med


def ratio_table(med: dict, names) -> str:
    lines = ['| ratio | eager | eager deploy | ort | ort deploy |', '| --- | --- | --- | --- | --- |']
    for a, b in RATIOS:
        if a not in names or b not in names:
            continue
        cells = []
        for r in ('eager', 'eager deploy', 'ort', 'ort deploy'):
            base = 'ort' if r.startswith('ort') else 'eager'
            if (a, r) in med and (b, base) in med:
                cells.append(f'{med[(a, r)] / med[(b, base)]:.2f}x')
            else:
                cells.append('-')
        lines.append(f'| {NAMES[a]} / {NAMES[b]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(med: dict, names, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, runtime in zip(axes, ('eager', 'ort')):
        series = [('MicroNet as trained', [n for n in names if n in MICRONET_MID], runtime, 'o--'),
                  ('MicroNet deploy', [n for n in names if n in MICRONET_MID],
                   runtime + ' deploy', 's-'),
                  ('MobileNetV3-Small', [n for n in names if n in MNV3_ARCH], runtime, '^-')]
        for label, ns, r, style in series:
            pts = [(med[(n, r)], TOP1[n], n) for n in ns if (n, r) in med]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
            for lat, acc, n in pts:
                ax.annotate(n, (lat, acc), textcoords='offset points', xytext=(4, -10),
                            fontsize=7)
        ax.set_xlabel(f'latency, ms ({"PyTorch eager" if runtime == "eager" else "ONNX Runtime"}'
                      ', 1 thread, batch 1)')
        ax.set_ylabel('published ImageNet top-1 (%)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    shape = tuple(args.shape)
    os.makedirs(args.out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fns = runners(args.models, shape, not args.no_onnx, tmp)
        times = measure(fns, args.rounds, args.iters, args.warmup)
    table, med = latency_table(times, args.models)
    ratios = ratio_table(med, args.models)
    train = {}
    for name in args.train_models if args.train_steps > 0 else []:
        train[name] = train_throughput(name, args.train_batch, args.train_steps, shape)
    header = (f'Latency: batch 1, {shape[0]}x{shape[1]}, 1 thread, median of {args.rounds} '
              f'interleaved rounds x {args.iters} calls (IQR in brackets); torch '
              f'{torch.__version__}')
    try:
        import onnxruntime
        header += f', onnxruntime {onnxruntime.__version__}'
    except ImportError:
        pass
    parts = [header, '', table, '', 'Ratios (deploy columns divide by the baseline as built):',
             '', ratios]
    if train:
        parts += ['', f'Training throughput (forward + backward + SGD, batch '
                  f'{args.train_batch}, 1 thread, {args.train_steps} steps):', '',
                  '| model | images/s |', '| --- | --- |']
        parts += [f'| {NAMES[n]} | {v:.1f} |' for n, v in train.items()]
    report = '\n'.join(parts)
    print(report)
    with open(osp.join(args.out_dir, 'benchmark.md'), 'w') as f:
        f.write(report + '\n')
    plot(med, args.models, osp.join(args.out_dir, 'latency_vs_top1.png'))
    print(f'wrote {args.out_dir}/benchmark.md and {args.out_dir}/latency_vs_top1.png')
    return dict(times=times, median=med, train=train)


if __name__ == '__main__':
    main()

"""CPU latency of MicroNet M0-M3 (as trained, deploy mode, and as native fused blocks) against mmpretrain's MobileNetV3-Small x0.5 / x0.75 / x1.0 in PyTorch eager, ONNX
Runtime and OpenVINO, in one run; each latency as a multiple of the model's arithmetic bound;
training throughput and peak memory with and without the fused Shift-Max operator; and the
dense models (pose-m0 against mmpose's MobileNetV2 256x192, v1-m0 MR-ASPP against LR-ASPP
on MobileNetV3-Small at the MobileNetV3 paper's setting, 512x1024: output stride 16, reduced
last stage, the paper's head; tools/analysis/baselines/); and the whole detector end to end,
NMS included (``micronet_mm.deploy.detection``, as ``export_onnx.py`` writes it):
RetinaNet-MicroNet-M3 against the same RetinaNet with mmpretrain's MobileNetV3-Small x1.0
backbone (the paper's Table 8 comparison), 800x1344. Random weights (latency does not depend on
them; a detector's NMS time does, a little, through the number of candidates above its score
threshold).

    python tools/analysis/benchmark.py [--rounds R] [--iters I] [--models m2 mnv3-s-050 ...]
        [--runtimes eager ort ov ...] [--dense pose-m0 pose-mnv2 ...] [--train-steps S]
        [--out-dir DIR] [--force]

Latency: one thread (``torch.set_num_threads(1)``; ONNX Runtime intra/inter-op threads 1;
OpenVINO ``INFERENCE_NUM_THREADS=1``, one stream), batch 1, 224x224 (dense models: their input
size). Every round times each (model, runtime) for ``--iters`` calls, in turn, so that load
changes on a shared machine hit all alike; the tables give the median over rounds of the
per-call mean and the interquartile range, and a second ratio table divides the per-call
minima (each call timed on its own; the fastest call of the whole run). Runtimes:

* ``eager``: the model as trained; ``eager deploy``: ``switch_to_deploy(model, 'native')``
  (the native form, not the standard-operator default: the stem and every stage one native
  ``micronet::program`` call when the operators are built; a classifier's whole backbone one
  call and its head two);
* ``ort`` / ``ort deploy``: ONNX Runtime (ORT_ENABLE_ALL, sequential, 1 + 1 threads, CPU
  provider) on the plain export and on the ``backend='onnxruntime'`` deploy export;
* ``ov`` / ``ov deploy``: OpenVINO 2026 (CPU, float32: ``INFERENCE_PRECISION_HINT=f32``; its
  default on AMX CPUs is bf16) on the same two ONNX files; ``ov fused``: the
  ``backend='openvino'`` deploy export: the stem and every stage one native
  ``micronet::Program`` node (``micronet_mm/csrc/program.h``; a classifier's whole backbone
  one node and its head two), any Dynamic Shift-Max outside
  them (the pose head's) one native ``micronet::ShiftMax`` node (the extension of
  ``micronet_mm/csrc/openvino``);
* ``mnn`` / ``mnn deploy``: MNN (CPU, high precision, one thread; ``micronet_mm.runtime.mnn``)
  on the plain export and on the ``backend='mnn'`` deploy export; ``ncnn deploy``: ncnn (float32,
  one thread; ``micronet_mm.runtime.ncnn``: traced by pnnx, as ``export_onnx.py --backend ncnn``
  converts it) on the ``backend='ncnn'`` deploy form (ncnn runs no MicroNet as trained); the
  baselines as built, converted the same way (``mnn``, ``ncnn``). The classifiers only.

Arithmetic bound: the model's multiply-adds (``micronet_mm.analysis.count_complexity``, the
papers' convention) divided by the peak of one thread, measured in the same interleaved rounds
as the models: a 512x512x512 float32 ``torch.mm``. Training: images/s of forward + backward +
SGD step at batch 64 (one thread, 224x224) and the peak memory of those steps (peak RSS above
the RSS before the model was built), each in a fresh process
(``tools/analysis/bench_models.train_step_stats``), with the fused Shift-Max operator off
(``reference``) and on (``fused``) where it is built.

Writes ``DIR/benchmark.md`` (the tables) and ``DIR/latency_vs_top1.png`` (published ImageNet
top-1 against measured latency), each atomically; it refuses, before measuring, when either
exists, unless ``--force``.
"""
from __future__ import annotations

import argparse
import contextlib
import os.path as osp
import statistics
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from micronet_mm.errors import run_cli  # noqa: E402
from micronet_mm.fileio import atomic_write, refuse_overwrite  # noqa: E402
from micronet_mm.runtime.onnxruntime import open_session  # noqa: E402
from tools.analysis.bench_models import (DENSE, MICRONET_MID, MNV3_ARCH, NAMES, TOP1,  # noqa: E402
                                         build, deployed, export_file, is_micronet, madds,
                                         fused_variants, measure, openvino_request,
                                         tensor_forward, train_step_stats)

RATIOS = [('m2', 'mnv3-s-050'), ('m3', 'mnv3-s-075'), ('m1', 'mnv3-s-050'),
          ('m0', 'mnv3-s-050'), ('pose-m0', 'pose-mnv2'), ('seg-v1-m0', 'seg-lraspp'),
          ('det-m3', 'det-mnv3')]
DEFAULT_MODELS = list(TOP1)
RUNTIMES = ('eager', 'eager deploy', 'ort', 'ort deploy', 'ov', 'ov deploy', 'ov fused', 'mnn',
            'mnn deploy', 'ncnn', 'ncnn deploy')
#: the runtimes a baseline runs in (its plain export), and those measured for classifiers only
PLAIN = ('eager', 'ort', 'ov', 'mnn', 'ncnn')
MNN_RUNTIMES, NCNN_RUNTIMES = ('mnn', 'mnn deploy'), ('ncnn', 'ncnn deploy')
EDGE = MNN_RUNTIMES + NCNN_RUNTIMES
#: the whole detectors (NMS in the graph) run in MNN too; ncnn has no NonMaxSuppression
DETECTORS = ('det-m3', 'det-mnv3')
#: the runtime a MicroNet column is compared in (the baseline's column)
BASE = {r: r.split()[0] for r in RUNTIMES}
PEAK_N = 512  # the GEMM of the peak: (N x N) @ (N x N)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MicroNet vs MobileNetV3-Small CPU benchmark')
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS, choices=DEFAULT_MODELS)
    parser.add_argument('--runtimes', nargs='+', default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument('--rounds', type=int, default=15, help='interleaved rounds')
    parser.add_argument('--iters', type=int, default=20, help='calls per model per round')
    parser.add_argument('--warmup', type=int, default=10, help='untimed calls per model')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    parser.add_argument('--dense', nargs='*', default=list(DENSE), choices=list(DENSE),
                        help='dense models (none: skip them)')
    parser.add_argument('--dense-rounds', type=int, default=5)
    parser.add_argument('--dense-iters', type=int, default=2)
    parser.add_argument('--dense-scale', type=float, default=1.0,
                        help='scale the dense input sizes (smoke tests)')
    parser.add_argument('--train-steps', type=int, default=3,
                        help='timed training steps per model (0: skip training)')
    parser.add_argument('--train-batch', type=int, default=64)
    parser.add_argument('--train-models', nargs='+', default=['m0', 'm1', 'm2', 'm3',
                                                              'mnv3-s-075'],
                        choices=DEFAULT_MODELS)
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing benchmark.md / latency_vs_top1.png')
    return parser.parse_args(argv)


def runners(names, shapes: dict, runtimes, tmp: str) -> dict:
    """``{(model, runtime): callable}`` for every combination measured (deploy runtimes for
    MicroNet only)."""
    out = {}
    for name in names:
        model, shape = build(name), shapes[name]
        x = torch.randn(1, 3, *shape)
        xn = x.numpy()
        want = [r for r in runtimes if (is_micronet(name) or r in PLAIN)
                and (name in TOP1 or r not in EDGE or (name in DETECTORS and r in MNN_RUNTIMES))
                and not (is_micronet(name) and r == 'ncnn')]  # ncnn: deploy form only
        files = {}  # ONNX file per form: plain, onnxruntime, openvino

        def onnx(form):
            if form not in files:
                m = model if form == 'plain' else deployed(model, form)
                files[form] = export_file(m, shape, tmp, f'{name}-{form}',
                                          native=form == 'openvino')
            return files[form]

        for r in want:
            if r == 'eager':
                out[(name, r)] = lambda m=model, x=x: tensor_forward(m, x)
            elif r == 'eager deploy':
                out[(name, r)] = lambda m=deployed(model, 'native'), x=x: tensor_forward(m, x)
            elif r.split()[0] in ('mnn', 'ncnn'):
                m = model if r in PLAIN else deployed(model, r.split()[0])
                out[(name, r)] = edge_runner(r.split()[0], m, shape, tmp, f'{name}-{r}')
            elif r.startswith('ort'):
                sess = open_session(onnx('plain' if r == 'ort' else 'onnxruntime'))
                out[(name, r)] = lambda s=sess, xn=xn: s.run(None, {'input': xn})
            else:
                form = {'ov': 'plain', 'ov deploy': 'onnxruntime', 'ov fused': 'openvino'}[r]
                req = openvino_request(onnx(form))
                out[(name, r)] = lambda q=req, xn=xn: q.infer({0: xn})
    return out


def edge_runner(runtime: str, model: torch.nn.Module, shape, tmp: str, tag: str):
    """``() -> outputs`` of ``model`` converted for ``runtime`` (``'mnn'``: its batch-1 ONNX
    export, the file ONNX Runtime reads; ``'ncnn'``: traced by pnnx, as ``export_onnx.py
    --backend ncnn`` converts it), one thread, on a fixed random image."""
    import importlib

    import numpy as np

    from tools.deployment.export_onnx import LogitsWrapper
    module = importlib.import_module(f'micronet_mm.runtime.{runtime}')
    tag = tag.replace(' ', '-')
    if runtime == 'mnn':
        source, path = export_file(model, shape, tmp, tag), osp.join(tmp, tag + '.mnn')
    else:
        source, path = LogitsWrapper(model).eval(), osp.join(tmp, tag + '.param')
    module.convert(source, path, shape=(1, 3, *shape))
    runner = module.load(path, threads=1)
    xn = np.random.default_rng(0).standard_normal((1, 3, *shape), dtype=np.float32)
    return lambda: runner(xn)


def peak_runner() -> dict:
    """``{('gemm', 'peak'): callable}``: the float32 GEMM whose rate is the arithmetic peak."""
    a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)
    c = torch.empty(PEAK_N, PEAK_N)
    return {('gemm', 'peak'): lambda: torch.mm(a, b, out=c)}


def stats(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return statistics.median(values), q[0], q[2]


def latency_table(times: dict, names) -> tuple[str, dict]:
    present = [r for r in RUNTIMES if any((n, r) in times for n in names)]
    med = {k: stats(v)[0] for k, v in times.items()}
    lines = ['| model | ' + ' | '.join(f'{r} ms (IQR)' for r in present) + ' |',
             '| --- |' + ' --- |' * len(present)]
    for n in names:
        cells = []
        for r in present:
            if (n, r) in times:
                m, lo, hi = stats(times[(n, r)])
                cells.append(f'{m:.2f} ({lo:.2f}-{hi:.2f})')
            else:
                cells.append('-')
        top1 = f' ({TOP1[n]})' if n in TOP1 else ''
        lines.append(f'| {NAMES[n]}{top1} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines), med


def ratio_table(med: dict, names) -> str:
    present = [r for r in RUNTIMES if any((n, r) in med for n in names)]
    lines = ['| ratio | ' + ' | '.join(present) + ' |', '| --- |' + ' --- |' * len(present)]
    for a, b in RATIOS:
        if a not in names or b not in names:
            continue
        cells = [f'{med[(a, r)] / med[(b, BASE[r])]:.2f}x'
                 if (a, r) in med and (b, BASE[r]) in med else '-' for r in present]
        lines.append(f'| {NAMES[a]} / {NAMES[b]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def bound_table(med: dict, names, counts: dict, peak: float) -> str:
    """Each latency as a multiple of ``MAdds / peak``."""
    present = [r for r in RUNTIMES if any((n, r) in med for n in names)]
    lines = ['| model | MAdds | bound ms | ' + ' | '.join(present) + ' |',
             '| --- | --- | --- |' + ' --- |' * len(present)]
    for n in names:
        bound = counts[n] / peak * 1e3
        cells = [f'{med[(n, r)] / bound:.1f}x' if (n, r) in med else '-' for r in present]
        lines.append(f'| {NAMES[n]} | {counts[n] / 1e6:.1f}M | {bound:.3f} | '
                     + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(med: dict, names, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = [(r, label) for r, label in (('eager', 'PyTorch eager'), ('ort', 'ONNX Runtime'),
                                          ('ov', 'OpenVINO f32'), ('mnn', 'MNN'),
                                          ('ncnn', 'ncnn'))
              if any((n, r) in med for n in names)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (runtime, label) in zip(axes[0], panels):
        micro = [n for n in names if n in MICRONET_MID]
        series = [('MicroNet as trained', micro, runtime, 'o--'),
                  ('MicroNet deploy', micro, runtime + ' deploy', 's-'),
                  ('MicroNet native blocks', micro, runtime + ' fused', 'D-'),
                  ('MobileNetV3-Small', [n for n in names if n in MNV3_ARCH], runtime, '^-')]
        for name, ns, r, style in series:
            pts = [(med[(n, r)], TOP1[n], n) for n in ns if (n, r) in med]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
            for lat, acc, n in pts:
                ax.annotate(n, (lat, acc), textcoords='offset points', xytext=(4, -10),
                            fontsize=7)
        ax.set_xlabel(f'latency, ms ({label}, 1 thread, batch 1)')
        ax.set_ylabel('published ImageNet top-1 (%)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def versions() -> str:
    out = f'torch {torch.__version__}'
    for mod in ('onnxruntime', 'openvino', 'MNN', 'ncnn'):
        with contextlib.suppress(ImportError):
            m = __import__(mod)
            out += f', {mod} {m.version() if mod == "MNN" else m.__version__}'
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    shape = tuple(args.shape)
    shapes = {n: shape for n in args.models}
    shapes.update({n: tuple(int(s * args.dense_scale) // 32 * 32 for s in DENSE[n][2])
                   for n in args.dense})
    md_path = osp.join(args.out_dir, 'benchmark.md')
    png_path = osp.join(args.out_dir, 'latency_vs_top1.png')
    for path in (md_path, png_path):
        refuse_overwrite(path, args.force)
    # training first, while this process is small: a child's peak RSS (ru_maxrss) starts from
    # the size of the process it was forked from
    train = {}
    for name in args.train_models if args.train_steps > 0 else []:
        for variant in fused_variants() if is_micronet(name) else ['reference']:
            res = train_step_stats(name, fused=variant == 'fused', batch=args.train_batch,
                                   steps=args.train_steps, shape=shape)
            train[(name, variant)] = (res['images_per_s'], res['peak_mib'])
    with tempfile.TemporaryDirectory() as tmp:
        fns = {**peak_runner(), **runners(args.models, shapes, args.runtimes, tmp)}
        times, fastest = measure(fns, args.rounds, args.iters, args.warmup)
        dense = runners(args.dense, shapes, args.runtimes, tmp) if args.dense else {}
        if dense:
            dense_times, dense_fastest = measure(dense, args.dense_rounds, args.dense_iters, 1)
            times.update(dense_times)
            fastest.update(dense_fastest)
    peak = PEAK_N ** 3 / (stats(times.pop(('gemm', 'peak')))[0] / 1e3)  # MAC/s
    fastest.pop(('gemm', 'peak'))
    names = args.models + args.dense
    table, med = latency_table(times, names)
    counts = {n: madds(n, shapes[n]) for n in names}
    header = (f'Latency: batch 1, {shape[0]}x{shape[1]} (dense models: their input), 1 thread, '
              f'median of {args.rounds} interleaved rounds x {args.iters} calls (dense: '
              f'{args.dense_rounds} x {args.dense_iters}; IQR in brackets; garbage collector off while '
              f'timing); {versions()}')
    parts = [header, '', table, '',
             'Ratios (each column divides by the baseline in the same runtime as built):', '',
             ratio_table(med, names), '',
             'The same ratios of per-call minima (the fastest single call of each model in '
             'this run: the least disturbed by other load on a shared host):', '',
             ratio_table(fastest, names), '',
             f'Latency / arithmetic bound (MAdds / peak; peak {peak / 1e9:.1f} GMAC/s from a '
             f'{PEAK_N}^3 float32 torch.mm on one thread, measured in the same rounds):', '',
             bound_table(med, names, counts, peak)]
    if train:
        parts += ['', f'Training (forward + backward + SGD, batch {args.train_batch}, 1 thread, '
                  f'{args.train_steps} steps, each in a fresh process; peak memory: peak RSS '
                  'above the RSS before the model was built):', '',
                  '| model | Shift-Max | images/s | peak MiB |',
                  '| --- | --- | --- | --- |']
        parts += [f'| {NAMES[n]} | {v if is_micronet(n) else "-"} | {r:.1f} | {m:.0f} |'
                  for (n, v), (r, m) in train.items()]
    report = '\n'.join(parts)
    print(report)
    with atomic_write(md_path) as tmp_md, open(tmp_md, 'w') as f:
        f.write(report + '\n')
    with atomic_write(png_path) as tmp_png:
        plot(med, args.models, tmp_png)
    print(f'wrote {args.out_dir}/benchmark.md and {args.out_dir}/latency_vs_top1.png')
    return dict(times=times, median=med, fastest=fastest, train=train, peak=peak, madds=counts)


if __name__ == '__main__':
    run_cli(main)

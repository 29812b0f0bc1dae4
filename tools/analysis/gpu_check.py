"""The GPU check: one command, about 8 minutes on one H100 (``--budget-s``, default 420 s).

    python tools/analysis/gpu_check.py [--out FILE.md] [--force] [--budget-s S]
    python tools/analysis/gpu_check.py --smoke      # CPU, tiny sizes: checks the code paths

What it measures, each part in a fresh process (peak memory per part; a part that would overrun
the budget is killed and listed as such):

1. **Classification training**: MicroNet-M2 and M3 against mmpretrain's MobileNetV3-Small x0.75
   and x1.0, batch 256 at 224x224, mixed precision (``torch.autocast`` float16 and a
   ``GradScaler``), SGD; images/s over the timed steps after warm-up steps, and the peak GPU
   memory (``torch.cuda.max_memory_allocated``). Each model eager and under ``torch.compile``
   (Inductor: Dynamic Shift-Max and the other element-wise chains fused into generated Triton
   kernels). The eager runs go first, then the compiled ones, M2 and MobileNetV3-Small x0.75
   first, as the budget allows.
2. **RetinaNet-MicroNet-M3** (``configs/det/retinanet_micronet_m3_demo-shapes.py``) on the
   embedded demo detection data: training iterations/s with mmengine's ``AmpOptimWrapper``.
3. **DDP with SyncBN**, when the machine has two GPUs or more: two processes (NCCL), a
   MicroNet-M0 classifier built with ``norm_cfg=dict(type='SyncBN')``, one training step; the
   BN running statistics must agree across the processes (they are computed over both
   processes' images).

``--smoke`` runs every part on the CPU at toy sizes (MicroNet-M2 only unless ``--models``,
batch 2, 64x64, 2 steps, bfloat16
autocast, ``torch.compile`` with the ``aot_eager`` backend, the DDP part with gloo and plain BN,
as SyncBN synchronizes CUDA tensors only); tests/test_gpu_check.py runs it. It checks that the
code runs, not speed.

Prints a Markdown report (GPU, torch and CUDA versions first) and, with ``--out``, writes it.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from micronet_mm.errors import InvalidInputError, run_cli  # noqa: E402
from micronet_mm.fileio import atomic_write, refuse_overwrite  # noqa: E402

CLS_MODELS = ('m2', 'mnv3-s-075', 'm3', 'mnv3-s-100')
NAMES = {'m2': 'MicroNet-M2', 'm3': 'MicroNet-M3', 'mnv3-s-075': 'MobileNetV3-Small x0.75',
         'mnv3-s-100': 'MobileNetV3-Small x1.0'}
DET_CFG = osp.join(ROOT, 'configs', 'det', 'retinanet_micronet_m3_demo-shapes.py')


def sizes(smoke: bool) -> dict:
    """Batch, image size, warm-up and timed steps of each part."""
    if smoke:
        return dict(batch=2, image=64, warmup=1, steps=2, det_batch=2, det_warmup=1,
                    det_iters=2)
    return dict(batch=256, image=224, warmup=5, steps=20, det_batch=16, det_warmup=5,
                det_iters=30)


def amp_context(device: torch.device):
    """float16 autocast on CUDA, bfloat16 on the CPU (smoke)."""
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else None


# ---------------------------------------------------------------- part 1: classification
def classification(name: str, compiled: bool, smoke: bool) -> dict:
    """Training images/s and peak memory of classifier ``name`` (module doc, part 1)."""
    from tools.analysis.benchmark import build
    s = sizes(smoke)
    device = torch.device('cpu' if smoke else 'cuda')
    torch.backends.cudnn.benchmark = True
    model = build(name).train().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == 'cuda')
    step_model = (torch.compile(model, backend='aot_eager' if smoke else 'inductor')
                  if compiled else model)
    x = torch.randn(s['batch'], 3, s['image'], s['image'], device=device)
    y = torch.randint(0, 1000, (s['batch'],), device=device)

    def step() -> float:
        with amp_context(device):
            loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()

    start = time.perf_counter()
    for _ in range(s['warmup']):
        loss = step()
    sync(device)
    warmup_s = time.perf_counter() - start
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(s['steps']):
        loss = step()
    sync(device)
    elapsed = time.perf_counter() - start
    if loss != loss:  # NaN
        raise RuntimeError(f'{name}: the loss is NaN')
    return dict(images_per_s=s['batch'] * s['steps'] / elapsed, peak_mib=peak_mib(device),
                warmup_s=warmup_s, loss=loss)


# ---------------------------------------------------------------- part 2: detection
def detection(smoke: bool) -> dict:
    """RetinaNet-MicroNet-M3 training iterations/s on the demo data (module doc, part 2)."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from micronet_mm.datasets.demo_det import ensure_demo_det
    from micronet_mm.tools_common import build_model
    s = sizes(smoke)
    device = torch.device('cpu' if smoke else 'cuda')
    data_root = ensure_demo_det(osp.join(ROOT, 'data', 'demo_det'))
    cfg = Config.fromfile(DET_CFG)
    cfg.train_dataloader.batch_size = s['det_batch']
    cfg.train_dataloader.num_workers = 0 if smoke else 4
    cfg.train_dataloader.persistent_workers = not smoke
    cfg.train_dataloader.dataset.data_root = data_root if data_root.endswith('/') \
        else data_root + '/'
    init_default_scope('mmdet')
    model = build_model(cfg).train().to(device)
    optim_cfg = dict(cfg.optim_wrapper)
    if device.type == 'cuda':
        optim_cfg.update(type='AmpOptimWrapper', loss_scale='dynamic')
    optim = build_optim_wrapper(model, optim_cfg)
    loader = Runner.build_dataloader(cfg.train_dataloader)
    batches = iter(loader)

    def step() -> None:
        nonlocal batches
        try:
            data = next(batches)
        except StopIteration:
            batches = iter(loader)
            data = next(batches)
        model.train_step(data, optim)

    for _ in range(s['det_warmup']):
        step()
    sync(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(s['det_iters']):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    return dict(iters_per_s=s['det_iters'] / elapsed, batch=s['det_batch'],
                peak_mib=peak_mib(device))


# ---------------------------------------------------------------- part 3: DDP + SyncBN
def _ddp_worker(rank: int, world: int, port: int, smoke: bool, result_path: str) -> None:
    import torch.distributed as dist
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import micronet_mm.models  # noqa: F401  (registers MicroNet)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    backend = 'gloo' if smoke else 'nccl'
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = torch.device('cpu') if smoke else torch.device('cuda', rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='MicroNetImageClassifier',
            backbone=dict(type='MicroNet', arch='m0', norm_cfg=dict(type='SyncBN')),
            head=dict(type='MicroNetClsHead', num_classes=10, in_channels='auto',
                      mid_channels=64)))
    if smoke:  # SyncBN synchronizes CUDA tensors only
        model = revert_sync_batchnorm(model)
    model = torch.nn.parallel.DistributedDataParallel(
        model.to(device), device_ids=[rank] if device.type == 'cuda' else None)
    torch.manual_seed(rank)  # different images on each process
    s = sizes(smoke)
    x = torch.randn(s['batch'] if smoke else 32, 3, s['image'], s['image'], device=device)
    out = model(x, mode='tensor')
    out.float().square().mean().backward()
    bn = model.module.backbone.stem.bn1
    stats = torch.cat([bn.running_mean, bn.running_var]).detach()
    gathered = [torch.empty_like(stats) for _ in range(world)]
    dist.all_gather(gathered, stats)
    if rank == 0:
        spread = max((g - gathered[0]).abs().max().item() for g in gathered)
        with open(result_path, 'w') as f:
            json.dump(dict(processes=world, backend=backend, norm=type(bn).__name__,
                           running_stats_spread=spread), f)
    dist.destroy_process_group()


def ddp(smoke: bool) -> dict:
    """One DDP step on two processes (module doc, part 3)."""
    import torch.multiprocessing as mp
    world = 2
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'ddp.json')
        mp.spawn(_ddp_worker, args=(world, 29533, smoke, path), nprocs=world, join=True)
        with open(path) as f:
            res = json.load(f)
    if not smoke and res['running_stats_spread'] > 1e-5:
        raise RuntimeError(f'SyncBN running statistics differ across processes by '
                           f'{res["running_stats_spread"]:.3g}')
    return res


# ---------------------------------------------------------------- driver
PARTS = {'cls': classification, 'det': detection, 'ddp': ddp}


def run_part(part: str, kwargs: dict, timeout: float) -> dict:
    """One part in a fresh process, at most ``timeout`` seconds."""
    code = ('import json, sys; sys.path.insert(0, {root!r}); '
            'from tools.analysis.gpu_check import PARTS; '
            'print(json.dumps(PARTS[{part!r}](**{kwargs!r})))').format(
                root=ROOT, part=part, kwargs=kwargs)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                             text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return dict(status=f'stopped at the time budget ({timeout:.0f} s left)')
    res = dict(wall_s=time.perf_counter() - start)
    if out.returncode:
        res['status'] = 'failed: ' + ' '.join(out.stderr.strip().splitlines()[-1:])[:300]
        res['stderr'] = out.stderr[-3000:]
        return res
    res.update(json.loads(out.stdout.strip().splitlines()[-1]), status='ok')
    return res


def environment(smoke: bool) -> str:
    if smoke:
        return f'CPU smoke run (toy sizes, not a measurement); torch {torch.__version__}'
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return (f'{len(names)} x {names[0]}; torch {torch.__version__}, CUDA {torch.version.cuda}, '
            f'cuDNN {torch.backends.cudnn.version()}')


def fmt(value, spec: str) -> str:
    return '-' if value is None else format(value, spec)


def report(results: dict, smoke: bool) -> str:
    s = sizes(smoke)
    amp = 'bfloat16 autocast' if smoke else 'float16 autocast + GradScaler'
    lines = [f'# GPU check: {environment(smoke)}', '',
             f'Classification training: batch {s["batch"]}, {s["image"]}x{s["image"]}, {amp}, '
             f'SGD; {s["steps"]} timed steps after {s["warmup"]}:', '',
             '| model | mode | images/s | peak MiB | status |', '| --- | --- | --- | --- | --- |']
    for (name, compiled), r in results['cls'].items():
        lines.append(f'| {NAMES[name]} | {"torch.compile" if compiled else "eager"} | '
                     f'{fmt(r.get("images_per_s"), ".0f")} | {fmt(r.get("peak_mib"), ".0f")} | '
                     f'{r["status"]} |')
    det = results.get('det')
    if det is not None:
        lines += ['', f'RetinaNet-MicroNet-M3 training on the demo data (batch '
                  f'{s["det_batch"]}, {s["det_iters"]} timed iterations): '
                  f'{fmt(det.get("iters_per_s"), ".2f")} iterations/s, peak '
                  f'{fmt(det.get("peak_mib"), ".0f")} MiB ({det["status"]})']
    dd = results.get('ddp')
    if dd is None:
        lines += ['', 'DDP + SyncBN: skipped (fewer than two GPUs)']
    else:
        lines += ['', f'DDP step, {dd.get("processes", 2)} processes ({dd.get("backend", "?")}, '
                  f'{dd.get("norm", "?")}): running-statistics spread across processes '
                  f'{fmt(dd.get("running_stats_spread"), ".2g")} ({dd["status"]})']
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--smoke', action='store_true',
                        help='CPU, toy sizes: check that every part runs (no measurement)')
    parser.add_argument('--models', nargs='+', choices=CLS_MODELS, default=None,
                        help='classifiers (default: all four; --smoke: m2)')
    parser.add_argument('--budget-s', type=float, default=420.0,
                        help='wall-clock budget of the whole check in seconds')
    parser.add_argument('--out', help='also write the report to this Markdown file')
    parser.add_argument('--force', action='store_true', help='replace an existing --out file')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.out:
        refuse_overwrite(args.out, args.force)
    if not args.smoke and not torch.cuda.is_available():
        raise InvalidInputError('gpu_check.py: no CUDA GPU is visible (torch.cuda.is_available() '
                                'is False); run it on a GPU machine, or use --smoke on the CPU')
    models = args.models or (['m2'] if args.smoke else list(CLS_MODELS))
    deadline = time.perf_counter() + args.budget_s

    def left() -> float:
        return deadline - time.perf_counter()

    results: dict = {'cls': {}}
    # eager first (fast), then detection and DDP, then the compiled runs as time allows
    for name in models:
        results['cls'][(name, False)] = run_part(
            'cls', dict(name=name, compiled=False, smoke=args.smoke), left())
    results['det'] = run_part('det', dict(smoke=args.smoke), left())
    if args.smoke or torch.cuda.device_count() >= 2:
        results['ddp'] = run_part('ddp', dict(smoke=args.smoke), left())
    for name in models:
        results['cls'][(name, True)] = run_part(
            'cls', dict(name=name, compiled=True, smoke=args.smoke), left())
    text = report(results, args.smoke)
    print(text)
    for key, r in [(f'cls {k}', v) for k, v in results['cls'].items()] + [
            ('det', results['det']), ('ddp', results.get('ddp') or {})]:
        if r.get('stderr'):
            print(f'--- {key} stderr (tail) ---\n{r["stderr"]}', file=sys.stderr)
    if args.out:
        with atomic_write(args.out) as tmp, open(tmp, 'w') as f:
            f.write(text + '\n')
    return results


if __name__ == '__main__':
    run_cli(main)

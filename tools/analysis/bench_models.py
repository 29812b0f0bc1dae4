"""The models and timing helpers that the benchmark tools share.

:func:`build` makes every model the tools measure (MicroNet M0-M3, mmpretrain's
MobileNetV3-Small x0.5 / x0.75 / x1.0, and the dense models of :data:`DENSE`, the detectors
end to end), random weights;
:func:`measure` times callables in interleaved rounds; :func:`train_throughput` and
:func:`train_step_stats` time training steps, the latter in a fresh process. Used by
``benchmark.py``, ``bench_shift_max.py``, ``bench_program.py`` and ``profile_ops.py``.
"""
from __future__ import annotations

import copy
import gc
import json
import os
import os.path as osp
import subprocess
import sys
import time
from collections.abc import Sequence

import torch

from micronet_mm.runtime.onnxruntime import open_session

#: published ImageNet top-1 (MicroNet ICCV paper Table 6; the MobileNetV3 paper)
TOP1 = {'m0': 46.6, 'm1': 51.4, 'm2': 59.4, 'm3': 62.5,
        'mnv3-s-050': 57.9, 'mnv3-s-075': 65.2, 'mnv3-s-100': 66.7}
NAMES = {'m0': 'MicroNet-M0', 'm1': 'MicroNet-M1', 'm2': 'MicroNet-M2', 'm3': 'MicroNet-M3',
         'mnv3-s-050': 'MobileNetV3-Small x0.5', 'mnv3-s-075': 'MobileNetV3-Small x0.75',
         'mnv3-s-100': 'MobileNetV3-Small x1.0',
         'pose-m0': 'MicroNet pose-m0 (256x192)', 'pose-mnv2': 'mmpose MobileNetV2 (256x192)',
         'seg-v1-m0': 'MicroNet v1-m0 MR-ASPP (512x1024)',
         'seg-lraspp': 'LR-ASPP MobileNetV3-S, paper setting (512x1024)',
         'det-m3': 'RetinaNet MicroNet-M3 (800x1344, with NMS)',
         'det-mnv3': 'RetinaNet MobileNetV3-Small x1.0 (800x1344, with NMS)'}
MNV3_ARCH = {'mnv3-s-050': ('small_050', 288), 'mnv3-s-075': ('small_075', 432),
             'mnv3-s-100': ('small', 576)}
MICRONET_MID = {'m0': 640, 'm1': 960, 'm2': 1024, 'm3': 1024}
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: dense models: (config, toolbox whose installed configs hold it (None: this repo), (H, W))
DENSE = {
    'pose-m0': ('configs/pose/td-hm_micronet-pose-m0_8xb64-250e_coco-256x192.py', None,
                (256, 192)),
    'pose-mnv2': ('body_2d_keypoint/topdown_heatmap/coco/td-hm_mobilenetv2_8xb64-210e_coco-'
                  '256x192.py', 'mmpose', (256, 192)),
    'seg-v1-m0': ('configs/seg/micronet-v1-m0-d16_mr-aspp_4xb4-320k_cityscapes-512x1024.py',
                  None, (512, 1024)),
    'seg-lraspp': ('tools/analysis/baselines/lraspp_mobilenet-v3-small-paper_cityscapes-'
                   '512x1024.py', None, (512, 1024)),
    # whole detectors end to end (micronet_mm.deploy.detection: decoding and NMS included) at
    # the COCO configs' test size; the baseline is the same config with DET_BACKBONES' backbone
    'det-m3': ('configs/det/retinanet_micronet_m3.py', None, (800, 1344)),
    'det-mnv3': ('configs/det/retinanet_micronet_m3.py', None, (800, 1344))}
#: the detectors' backbones replaced (the MicroNet paper's Table 8 comparison): mmpretrain's
#: MobileNetV3-Small x1.0 with the outputs of strides 8, 16 and 32 (layers 3 and 8, the last
#: blocks at those strides, and the final 1x1 convolution, layer 12), as the M3 config's
#: out_indices (1, 2, 3) give, and the FPN's input widths to match
DET_BACKBONES = {'det-mnv3': (dict(type='mmpretrain.MobileNetV3', arch='small',
                                   out_indices=(3, 8, 12)), [24, 48, 576])}


def build(name: str) -> torch.nn.Module:
    """The model ``name`` (an ImageNet classifier of ``TOP1`` or a dense model of ``DENSE``),
    eval mode, random weights."""
    import micronet_mm.models  # noqa: F401
    if name in DENSE:
        from mmengine.config import Config

        from micronet_mm.tools_common import build_model
        path, toolbox, _ = DENSE[name]
        if toolbox is not None:
            import importlib
            path = osp.join(osp.dirname(importlib.import_module(toolbox).__file__), '.mim',
                            'configs', path)
        cfg = Config.fromfile(osp.join(ROOT, path))
        if cfg.get('default_scope') == 'mmdet':
            import mmpretrain.models  # noqa: F401  (MobileNetV3)

            from micronet_mm.deploy.detection import end_to_end
            if name in DET_BACKBONES:
                backbone, channels = DET_BACKBONES[name]
                cfg.model.backbone = backbone
                cfg.model.neck.in_channels = channels
            else:
                cfg.model.backbone.init_cfg = None  # random weights
            return end_to_end(build_model(cfg))
        return build_model(cfg)
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


def is_micronet(name: str) -> bool:
    return name in MICRONET_MID or name in ('pose-m0', 'seg-v1-m0', 'det-m3')


def tensor_forward(model: torch.nn.Module, x: torch.Tensor):
    """What the benchmark times in PyTorch: ``model(x, None, mode='tensor')``, or an
    end-to-end detector's ``model(x)`` (boxes, scores, labels)."""
    from micronet_mm.deploy.detection import EndToEnd
    return model(x) if isinstance(model, EndToEnd) else model(x, None, mode='tensor')


def export_file(model: torch.nn.Module, shape, tmp: str, tag: str, native: bool = False,
                merge_programs: bool = True) -> str:
    """``model``'s batch-1 ONNX export ``tmp/TAG.onnx`` (``native``: the OpenVINO deploy model,
    with the custom domain ``micronet`` and constant bias maps, as ``export_onnx.py --backend
    openvino`` writes it; ``merge_programs=False``: its chained Program nodes left apart)."""
    from micronet_mm.deploy.detection import EndToEnd
    from tools.deployment.export_onnx import export, fix_native_input_size
    path = osp.join(tmp, f'{tag}.onnx')
    # an end-to-end detector is written as export_onnx.py writes it: a dynamic input size, fixed
    # where native nodes need it
    detector = isinstance(model, EndToEnd)
    export(model, path, shape, dynamic_batch=False,
           custom_opsets={'micronet': 1} if native else None,
           constant_caches=native and not detector, merge_programs=merge_programs)
    if detector:
        fix_native_input_size(path, shape)
    return path


def onnx_session(model: torch.nn.Module, shape, tmp: str, tag: str, profile: bool = False):
    """Export ``model`` (batch 1) into ``tmp`` and open it with the project's ORT options
    (``profile``: ONNX Runtime's profiler on, writing ``tmp/TAG_*.json``)."""
    path = export_file(model, shape, tmp, tag)
    return open_session(path, profile_prefix=osp.join(tmp, tag) if profile else None)


def openvino_request(path: str, profile: bool = False):
    """An infer request of ``path`` compiled by ``micronet_mm.runtime.openvino`` (CPU, f32, one
    thread, one stream)."""
    from micronet_mm.runtime.openvino import compile_model
    return compile_model(path, threads=1, profile=profile).create_infer_request()


def deployed(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    from micronet_mm.deploy import switch_to_deploy
    return switch_to_deploy(copy.deepcopy(model), backend)


def measure(fns: dict, rounds: int, iters: int, warmup: int) -> tuple[dict, dict]:
    """``({key: [ms per call, one mean per round]}, {key: fastest single call in ms})``, rounds
    interleaved over the keys. Each call is timed on its own, so the minimum is the call least
    disturbed by other load on the machine: the ratio of two minima from one run is the
    steadiest comparison a shared host allows. Python's garbage collector is off during the
    rounds (as ``timeit`` does), so that no call pays for collecting the process's objects."""
    times = {k: [] for k in fns}
    fastest = {k: float('inf') for k in fns}
    clock = time.perf_counter
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        gc.collect()
        gc.disable()  # as timeit does: no collection of the process's objects inside a call
        try:
            for _ in range(rounds):
                for key, fn in fns.items():
                    total = 0.0
                    for _ in range(iters):
                        t = clock()
                        fn()
                        dt = clock() - t
                        total += dt
                        fastest[key] = min(fastest[key], dt)
                    times[key].append(total / iters * 1e3)
        finally:
            gc.enable()
    return times, {k: v * 1e3 for k, v in fastest.items()}


def madds(name: str, shape) -> int:
    """Multiply-adds of one image (the papers' convention)."""
    from micronet_mm.analysis import count_complexity
    model = build(name)
    model = getattr(model, 'detector', model)  # a detector's: without the post-processing
    return count_complexity(model, (1, 3, *shape),
                            forward=lambda x: model(x, None, mode='tensor')).madds


def fused_variants() -> list[str]:
    """``['reference', 'fused']`` when the fused Shift-Max operator is built, else the first."""
    from micronet_mm.ops import fused_shift_max
    return ['reference', 'fused'] if fused_shift_max.available() else ['reference']


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


_TRAIN_CHILD = """
import json, sys
import torch
sys.path.insert(0, {root!r})
import micronet_mm.models, mmpretrain.models  # imported before the baseline RSS
from micronet_mm.ops import fused_shift_max
from tools.analysis.bench_models import train_throughput
torch.set_num_threads(1)
assert not {fused} or fused_shift_max.available(), 'fused operator not built'
def status_kib(field):  # this process's own memory, not ru_maxrss (inherited across exec)
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1])
open('/proc/self/clear_refs', 'w').write('5')  # VmHWM := VmRSS
before = status_kib('VmRSS')
with fused_shift_max.use_fused({fused}):
    calls = fused_shift_max.calls()
    ips = train_throughput({name!r}, {batch}, {steps}, {shape!r})
    calls = fused_shift_max.calls() - calls
peak = status_kib('VmHWM')
print(json.dumps(dict(images_per_s=ips, peak_mib=(peak - before) / 1024, fused_calls=calls)))
"""


def train_step_stats(name: str, *, fused: bool, batch: int = 64, steps: int = 2,
                     shape: Sequence[int] = (224, 224)) -> dict[str, float]:
    """A training step of the ImageNet classifier ``name`` (a ``benchmark.py`` model key), run
    in a fresh process with one thread.

    Args:
        name: e.g. ``'m2'`` or ``'mnv3-s-075'``.
        fused: use the fused Shift-Max operator (else the reference code).
        batch: images per step.
        steps: timed steps (after one untimed step).
        shape: input height and width.

    Returns:
        ``images_per_s``, ``peak_mib`` (peak RSS of the steps above the RSS before the model
        was built: weights, gradients, optimizer state, batch and activations) and
        ``fused_calls`` (fused Shift-Max calls made, 0 for the reference code).
    """
    code = _TRAIN_CHILD.format(root=ROOT, fused=fused, name=name, batch=batch, steps=steps,
                               shape=tuple(shape))
    env = dict(os.environ, OMP_NUM_THREADS='1', MALLOC_MMAP_THRESHOLD_='131072')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f'training step of {name} failed: {out.stderr.strip()[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])



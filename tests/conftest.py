import importlib.util
import multiprocessing
import os
import os.path as osp
import resource
import shutil
import subprocess
import sys
import traceback

import numpy as np
import pytest
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ARCHS = ['m0', 'm1', 'm2', 'm3']


def _forget_mmengine_globals() -> None:
    """Drop mmengine's process-wide "current instances" of the default scope and of the
    visualizers (ManagerMixin registries). Under pytest-xdist, tests and fixtures run in any
    order on any worker; left behind, a pose fixture's mmpose scope breaks the next mmpretrain
    build, and a segmentation visualizer is handed to the next detection hook."""
    from mmengine.registry import DefaultScope
    from mmengine.visualization import Visualizer

    def family(cls):
        yield cls
        for sub in cls.__subclasses__():
            yield from family(sub)

    for root in (DefaultScope, Visualizer):
        for cls in family(root):
            cls._instance_dict.clear()


@pytest.fixture(autouse=True)
def _seed_and_isolate():
    torch.manual_seed(0)
    _forget_mmengine_globals()
    yield
    _forget_mmengine_globals()


def train_demo(config: str, work_dir) -> None:
    """``tools/train.py CONFIG --work-dir WORK_DIR`` in a fresh process, as the README runs it."""
    subprocess.run([sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir)],
                   cwd=ROOT, check=True)


def mmpretrain_scope():
    """Build mmpretrain parts (e.g. a ClsHead's loss) from mmpretrain's registry even when an
    earlier test or fixture left another toolbox as mmengine's default scope."""
    from mmengine.registry import DefaultScope
    return DefaultScope.overwrite_default_scope('mmpretrain')


def randomize_bn(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (trained-like)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def assert_one_line_error(stderr: str, name: str) -> None:
    """A user error on the command line: one ``error:`` line, the last (library warnings may
    come before), naming ``name``, and no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and stderr.strip().endswith(errors[0]), stderr[-3000:]
    assert name in errors[0] and 'Traceback' not in stderr, stderr[-3000:]


# ---------------------------------------------------------- models with trained-like weights

M0_CONFIG = f'{ROOT}/configs/pretrain/micronet-m0_8xb64_in1k.py'


def trained_like(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters, and FC weights large enough that the
    Shift-Max coefficients vary with the input (the default init keeps them near constant)."""
    randomize_bn(module, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.weight.data.normal_(0, 0.1, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return module.eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| relative to the largest |b|."""
    return ((a - b).abs().max() / b.abs().max()).item()


def build_from_config(path: str) -> nn.Module:
    """The config's model under its toolbox's scope, in eval mode."""
    from mmengine.config import Config

    from tools.analysis.get_flops import build_model
    return build_model(Config.fromfile(path))


def calibrate(model: nn.Module, shape: tuple[int, int], seed: int = 0, run=None) -> nn.Module:
    """Trained-like statistics for a whole dense model, set in one eval-mode pass over a random
    batch, in the order the layers run:

    * every BN gets the mean and variance of its actual input, perturbed (mean + 0.1 std ·
      N(0, 1), variance · U(0.5, 1.5)): random statistics that still keep the activations O(1).
      Statistics drawn independently of the data (``randomize_bn`` alone) leave the deep
      dense models' outputs nearly independent of the image (a comparison would test little);
      statistics from a train-mode pass, then perturbed, compound to activations of 1e5.
      This includes the BN on each spatial attention's logit (pose head, MR-ASPP), so its
      softmax is neither uniform nor one-hot.
    """
    g = torch.Generator().manual_seed(seed)

    def set_bn(bn: nn.modules.batchnorm._BatchNorm, args: tuple) -> None:
        x = args[0].transpose(0, 1).flatten(1)  # (C, N·H·W)
        mean, var = x.mean(1), x.var(1)
        n = bn.num_features
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(n, generator=g))
        bn.running_var.copy_(var * (torch.rand(n, generator=g) + 0.5))

    hooks = [m.register_forward_pre_hook(set_bn) for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    # the reference Shift-Max code: random deep models amplify rounding ~1e7 (v1-m3's last stage),
    # so statistics set from the fused operator's output differ visibly in float64 comparisons
    from micronet_mm.ops import fused_shift_max
    with torch.no_grad(), fused_shift_max.use_fused(False):
        x = torch.randn(2, 3, *shape, generator=g)
        model(x, None, mode='tensor') if run is None else run(model, x)
    for h in hooks:
        h.remove()
    return model


def dense_trained_like(path: str, shape: tuple[int, int], seed: int = 0) -> nn.Module:
    """:func:`trained_like` (random BN affine parameters and FC weights), then
    :func:`calibrate`."""
    return calibrate(trained_like(build_from_config(path), seed), shape, seed)


def predict_samples(n: int, shape: tuple[int, int]) -> list:
    """``n`` mmdet ``DetDataSample`` of images of ``shape`` as fed (no resize, no padding), for
    ``detector.predict(x, samples, rescale=False)``."""
    from mmdet.structures import DetDataSample
    meta = dict(img_shape=shape, ori_shape=shape, scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=meta) for _ in range(n)]


def detector_with_detections(path: str, shape: tuple[int, int], seed: int = 0) -> nn.Module:
    """A RetinaNet or Faster R-CNN config's detector with trained-like, calibrated weights
    (:func:`calibrate`) whose predictions are not degenerate, on four random images:

    * RetinaNet: the class logits rescaled to lie within 6 of -5 and the box deltas within 1.5
      (sigmoid scores up to about 0.7, some above a 0.05 threshold, none rounded to 1.0 in
      float32, which would tie; boxes of many sizes, overlapping for NMS);
    * Faster R-CNN: the RPN's logits within 6 of 0 (distinct proposal scores) and its deltas
      within 1.5, then, on the RoIs those proposals give, the box head's class logits within 6
      of 0, the background's raised by 5.5 (softmax scores above the 0.05 threshold for some
      classes, fewer detections than slots) and its deltas within 1.5.

    The random model's largest outputs vary several-fold from image to image, hence the maximum
    over several."""
    from micronet_mm.ops import fused_shift_max
    model = build_from_config(path)
    two_stage = hasattr(model, 'roi_head')
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, *shape, generator=g)

    def run(m, images):
        if two_stage:
            return m.predict(images, predict_samples(len(images), shape), rescale=False)
        return m(images, None, mode='tensor')

    model = calibrate(trained_like(model, seed), shape, seed, run=run)

    def rescale(layer: nn.Module, centre: float, spread: float) -> None:
        outputs = []
        hook = layer.register_forward_hook(lambda m, a, out: outputs.append(out))
        run(model, x)
        hook.remove()
        values = torch.cat([o.flatten() for o in outputs]) - layer.bias.mean()
        median = values.median()
        scale = spread / (values - median).abs().max()
        layer.weight.mul_(scale)
        layer.bias.fill_(0.0).add_(centre - median * scale)

    with torch.no_grad(), fused_shift_max.use_fused(False):
        if two_stage:
            rescale(model.rpn_head.rpn_cls, 0.0, 6.0)
            rescale(model.rpn_head.rpn_reg, 0.0, 1.5)
            rescale(model.roi_head.bbox_head.fc_cls, 0.0, 6.0)
            # the background logit raised: tens of detections per image instead of the 100 of
            # max_per_img, whose cut-off falls between nearly equal scores
            model.roi_head.bbox_head.fc_cls.bias[-1] += 5.5
            rescale(model.roi_head.bbox_head.fc_reg, 0.0, 1.5)
        else:
            rescale(model.bbox_head.retina_cls, -5.0, 6.0)
            rescale(model.bbox_head.retina_reg, 0.0, 1.5)
    return model


DET_DEMO = f'{ROOT}/configs/det/retinanet_micronet_m3_demo-shapes.py'
POSE_DEMO = f'{ROOT}/configs/pose/td-hm_micronet-pose-m0_1xb8-10e_demo-pose-64x48.py'
SEG_DEMO = f'{ROOT}/configs/seg/micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-cityscapes-128x256.py'


# ------------------------------------------------------------- the official reference classifier

CLASSIFIER_MID = {'m0': 640, 'm1': 960, 'm2': 1024, 'm3': 1024}


def build_classifier(arch: str) -> nn.Module:
    """The 1000-class MicroNet classifier of ``arch`` (backbone and reference head), eval mode."""
    from mmpretrain.registry import MODELS

    import micronet_mm.models  # noqa: F401
    from micronet_mm.models import MicroNet
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='MicroNet', arch=arch),
        head=dict(type='MicroNetClsHead', num_classes=1000,
                  in_channels=MicroNet(arch).stage_channels[-1],
                  mid_channels=CLASSIFIER_MID[arch])))
    return model.eval()


# ------------------------------------------------------------ files, tools and hostile pickles

M0_CFG = osp.join(ROOT, 'configs/pretrain/micronet-m0_8xb64_in1k.py')
SHAPES_CFG = osp.join(ROOT, 'configs/pretrain/micronet-m0_1xb32_demo-shapes.py')
POSE_CFG = osp.join(ROOT, 'configs/pose/td-hm_micronet-pose-m0_8xb64-250e_coco-256x192.py')
SEG_CFG = osp.join(ROOT, 'configs/seg/'
                   'micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-cityscapes-128x256.py')
PRECIOUS = b'the user\'s own file\n'


def precious(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PRECIOUS)
    return path


def save_initial_weights(config, path, meta=None):
    from micronet_mm.tools_common import build_model, load_config
    torch.manual_seed(0)
    model = build_model(load_config(config))
    torch.save({'state_dict': model.state_dict(), 'meta': meta or {}}, path)
    return path


def seg_demo_inputs(tmp_path) -> tuple[str, str]:
    """``(image, checkpoint)`` for ``demo/seg_demo.py``: a 64x128 random street image and the
    initial weights of :data:`SEG_CFG`, with Cityscapes' class names as the checkpoint's meta."""
    from mmseg.datasets import CityscapesDataset
    from PIL import Image
    ckpt = save_initial_weights(SEG_CFG, tmp_path / 'seg.pth',
                                meta={'dataset_meta': dict(CityscapesDataset.METAINFO)})
    image = tmp_path / 'street.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 128, 3), np.uint8)
                    ).save(image)
    return str(image), str(ckpt)


def load_script(relpath):
    spec = importlib.util.spec_from_file_location(osp.basename(relpath)[:-3],
                                                  osp.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


N_IMAGES = 7  # a test split of 7 images: more than one, and no multiple of a batch size
CASES = {
    'seg': ('configs/seg/micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-cityscapes-128x256.py',
            'micronet_mm.datasets.demo_cityscapes', 'ensure_demo_cityscapes', 'demo_cityscapes'),
    'cls': ('configs/pretrain/micronet-m0_1xb32_demo-shapes.py',
            'micronet_mm.datasets.demo_shapes', 'ensure_demo_shapes', 'demo_shapes'),
}


def untrained_checkpoint(config: str, path) -> None:
    from micronet_mm.tools_common import build_model
    from mmengine.config import Config
    model = build_model(Config.fromfile(config))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)


class Forged:
    """Pickles as the given ``__reduce__`` tuple: how a hostile file is written."""

    def __init__(self, reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def run_child(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the Python source ``code`` in a fresh interpreter (this checkout and tests/ first on
    its path, one thread) and return it; the calling test fails, with the child's output, when
    the child did not exit with 0: a crash (a signal: SIGSEGV, SIGFPE, SIGABRT, ...) of native
    code there fails one test instead of killing the test run."""
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, 'tests'),
                                           os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=timeout, env=env)
    how = (f'killed by signal {-proc.returncode}' if proc.returncode < 0
           else f'exit code {proc.returncode}')
    assert proc.returncode == 0, f'child {how}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'
    return proc


def _address_space() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmSize:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmSize')


def _forked_child(conn, fn, args, env, memory):
    os.environ.update(env)
    if memory is not None:
        resource.setrlimit(resource.RLIMIT_AS, (_address_space() + memory,) * 2)
    try:
        fn(*args)
        conn.send(('ok', [], ''))
    except BaseException as e:  # noqa: BLE001  (reported to the parent)
        conn.send(('error', [c.__name__ for c in type(e).__mro__],
                   f'{e}\n{traceback.format_exc()[-2000:]}'))
    conn.close()
    os._exit(0)


def run_forked(fn, *args, env: dict | None = None, memory: int | None = None,
               timeout: float = 300) -> tuple[int, str, list[str], str]:
    """``fn(*args)`` in a forked child, so that a crash (a signal) shows as a negative exit code
    instead of killing pytest; ``env`` is set in the child, and ``memory`` bounds the child's
    address space to what it had at the fork plus that many bytes.

    Returns:
        ``(exit code, outcome, exception class names, message)``: outcome ``'ok'``,
        ``'error'`` (the classes and the message with the traceback's end) or ``'timeout'``.
    """
    ctx = multiprocessing.get_context('fork')
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_forked_child, args=(child, fn, args, env or {}, memory))
    proc.start()
    child.close()
    result = parent.recv() if parent.poll(timeout) else ('timeout', [], '')
    proc.join(30)
    return (proc.exitcode, *result)


def native_tool(name: str) -> str:
    """The path of the native build or run tool ``name`` (``clang++``, ``qemu-aarch64``, ...).
    A missing tool skips the calling test, or fails it where ``MICRONET_REQUIRE_NATIVE_TOOLS=1``
    (CI, which installs them: .ci/run), so that a test of portability never passes unrun."""
    path = shutil.which(name)
    if path is None:
        why = (f'{name} is not installed (Debian: apt-get install clang g++-aarch64-linux-gnu '
               f'qemu-user)')
        if os.environ.get('MICRONET_REQUIRE_NATIVE_TOOLS') == '1':
            pytest.fail(f'{why}; MICRONET_REQUIRE_NATIVE_TOOLS=1 requires it')
        pytest.skip(why)
    return path

# the native kernels' vector widths (program.h, vector_bytes()): float64 always runs 8 lanes,
# float32 16 (AVX-512 hosts) or 8 (the others); every float32 kernel test runs both, whatever
# the host
WIDTHS = [(torch.float64, None), (torch.float32, '64'), (torch.float32, '32')]
WIDTH_IDS = ['f64', 'f32x16', 'f32x8']


@pytest.fixture
def width(monkeypatch):
    """Call with a vector width ('32', '64' or None: the host's) to pick the float32 kernels
    (read on every call of the torch ops)."""
    def pick(vector_bytes: str | None) -> None:
        if vector_bytes is None:
            monkeypatch.delenv('MICRONET_PROGRAM_VECTOR_BYTES', raising=False)
        else:
            monkeypatch.setenv('MICRONET_PROGRAM_VECTOR_BYTES', vector_bytes)
    return pick

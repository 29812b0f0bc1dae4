import os
import subprocess
import sys

import pytest
import torch

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


#: width of the classifier's first FC layer per ImageNet variant (the reference's OUT_CH)
CLS_MID_CHANNELS = {'m0': 640, 'm1': 960, 'm2': 1024, 'm3': 1024}


def build_classifier(arch: str) -> torch.nn.Module:
    """The 1000-class MicroNet classifier of ``arch`` (backbone and reference head), eval mode."""
    from mmpretrain.registry import MODELS

    import micronet_mm.models  # noqa: F401  (registers MicroNet in mmpretrain)
    from micronet_mm.models import MicroNet
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='MicroNet', arch=arch),
        head=dict(type='MicroNetClsHead', num_classes=1000,
                  in_channels=MicroNet(arch).stage_channels[-1],
                  mid_channels=CLS_MID_CHANNELS[arch])))
    return model.eval()

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

"""Kill -9 and --resume give bit-identical final weights (micronet_mm/resume.py), also when
the kill hits while a checkpoint is being written (micronet_mm/hooks.py).

The classification demo, shortened: 64 images, batch 8 (8 iterations an epoch), 3 epochs, a
checkpoint every 3 iterations (mid-epoch ones included, only the newest kept, as the demo
keeps one), 2 persistent data workers and random flips, dropout in the head."""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

import micronet_mm  # noqa: F401  (allow-lists the types in mmengine checkpoints)
from conftest import ROOT

DEMO_CFG = osp.join(ROOT, 'configs/pretrain/micronet-m0_1xb32_demo-shapes.py')
SHORT = ['train_cfg.max_epochs=3', 'train_dataloader.dataset.indices=64',
         'train_dataloader.batch_size=8', 'train_dataloader.num_workers=2',
         'train_dataloader.persistent_workers=True', 'train_cfg.val_interval=2',
         'val_dataloader.dataset.indices=16', 'val_dataloader.num_workers=0',
         'val_dataloader.persistent_workers=False', 'default_hooks.checkpoint.by_epoch=False',
         'default_hooks.checkpoint.interval=3', 'default_hooks.checkpoint.max_keep_ckpts=1',
         'default_hooks.logger.interval=1', 'randomness.deterministic=True']
FINAL = 'iter_24.pth'  # 3 epochs x 8 iterations; saved as the last checkpoint

# A test-only hook, imported by the run through custom_imports: SIGKILLs the process after a
# given iteration, or in the middle of writing a given checkpoint (after half of its bytes).
KILLER = '''
import os, signal
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SigkillHook(Hook):
    priority = 'LOWEST'

    def __init__(self, after_iter=None, in_save_of=None):
        self.after_iter, self.in_save_of = after_iter, in_save_of

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.after_iter:
            os.kill(os.getpid(), signal.SIGKILL)

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 != self.in_save_of:
            return
        def put(backend, obj, filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        LocalBackend.put = put
'''


@pytest.fixture(scope='module')
def demo_data():
    from micronet_mm.datasets.demo_shapes import ensure_demo_shapes
    return ensure_demo_shapes(osp.join(ROOT, 'data', 'demo_shapes'))


def train(work, *extra, config=DEMO_CFG, env=None, options=()):
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', str(work), *extra,
           '--cfg-options', *SHORT, *options]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='1', **(env or {})))


def killing_config(tmp_path, **kill):
    (tmp_path / 'resume_killer.py').write_text(KILLER)
    args = ', '.join(f'{k}={v!r}' for k, v in kill.items())
    cfg = tmp_path / 'killed_cfg.py'
    cfg.write_text(textwrap.dedent(f'''\
        _base_ = {DEMO_CFG!r}
        custom_imports = dict(imports=['micronet_mm.models', 'resume_killer'],
                              allow_failed_imports=False)
        custom_hooks = [dict(type='SigkillHook', {args})]
        '''))
    return str(cfg), {'PYTHONPATH': f'{tmp_path}{os.pathsep}{ROOT}'}


def final_state(work):
    return torch.load(work / FINAL, map_location='cpu', weights_only=True)['state_dict']


@pytest.fixture(scope='module')
def uninterrupted(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('uninterrupted')
    proc = train(work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return final_state(work)


def assert_bit_identical(a, b):
    assert a.keys() == b.keys() and len(a) > 100
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}'


def test_two_uninterrupted_runs_agree_and_the_seed_matters(uninterrupted, tmp_path):
    """The comparison below can fail: another seed gives other weights."""
    proc = train(tmp_path / 'other', options=['randomness.seed=1'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = final_state(tmp_path / 'other')
    assert any(not torch.equal(uninterrupted[k], other[k]) for k in other)


@pytest.mark.parametrize('kill', [dict(after_iter=14), dict(in_save_of=12)],
                         ids=['mid-epoch', 'while-saving'])
def test_killed_and_resumed_run_is_bit_identical(uninterrupted, tmp_path, kill):
    work = tmp_path / 'work'
    config, env = killing_config(tmp_path, **kill)
    proc = train(work, config=config, env=env)
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILLed, no clean-up ran
    pointer = (work / 'last_checkpoint').read_text()
    if 'in_save_of' in kill:
        assert pointer.endswith('iter_9.pth') and not (work / 'iter_12.pth').exists()
        assert osp.getsize(pointer) > 0  # the previous good checkpoint was kept
        assert [p for p in os.listdir(work) if p.startswith('.iter_12.')]  # the torn temp
    else:
        assert pointer.endswith('iter_12.pth')  # epoch 2, batch 4 of 8: mid-epoch
    resumed = train(work, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = ''.join(open(p).read() for p in work.glob('*/*.log'))
    assert f'Auto resumed from the latest checkpoint {pointer}' in log
    assert_bit_identical(uninterrupted, final_state(work))


def test_resume_restores_random_states_and_sample_seeds():
    """Unit level: the sampler's tail after skip_next equals the full epoch's tail, with the
    same per-sample seeds; a random-state round trip survives weights_only loading."""
    import io
    import random

    import numpy as np

    from micronet_mm.resume import ResumableSampler, rng_states, set_rng_states
    sampler = ResumableSampler(list(range(20)), shuffle=True, seed=3)
    sampler.set_epoch(2)
    full = [(int(i), i.seed) for i in sampler]
    sampler.skip_next(8)
    assert [(int(i), i.seed) for i in sampler] == full[8:]
    assert [(int(i), i.seed) for i in sampler] == full  # skipping applies once
    assert len({s for _, s in full}) == 20
    sampler.set_epoch(3)
    assert [i.seed for i in sampler] != [s for _, s in full]

    buffer = io.BytesIO()
    torch.save(rng_states(), buffer)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    buffer.seek(0)
    set_rng_states(torch.load(buffer, weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected

"""No tool overwrites or deletes a file it did not create unless --force; writes are atomic.

Each test pre-creates the user's file and checks by content that it survived (and, where
--force is the rule, that --force replaced it)."""
import os
import os.path as osp
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import (M0_CFG, POSE_CFG, PRECIOUS, ROOT, SEG_CFG, SHAPES_CFG, assert_one_line_error,
                      load_script, precious, save_initial_weights, seg_demo_inputs)
from micronet_mm.errors import UserError
from micronet_mm.fileio import atomic_write, refuse_overwrite

def strays(folder):
    """Temp files that atomic_write or write_once would have left behind."""
    return [p for p in os.listdir(folder) if 'partial' in p or p.endswith(('.tmp', '.old'))]


# ------------------------------------------------------------------------ fileio itself

def test_refuse_overwrite_names_the_file_and_the_flag(tmp_path):
    target = precious(tmp_path / 'out.bin')
    with pytest.raises(UserError, match=rf'{target} exists; not overwriting.*--out-force'):
        refuse_overwrite(str(target), False, flag='--out-force')
    refuse_overwrite(str(target), True)  # forced: allowed
    refuse_overwrite(str(tmp_path / 'new.bin'), False)  # new: allowed
    with pytest.raises(UserError, match='is a directory'):
        refuse_overwrite(str(tmp_path), True)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = precious(tmp_path / 'out.png')
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_write(str(target)) as tmp:
            assert osp.dirname(tmp) == str(tmp_path) and tmp.endswith('.png')
            open(tmp, 'wb').write(b'half a')
            raise RuntimeError('disk full')
    assert target.read_bytes() == PRECIOUS
    assert strays(tmp_path) == []
    with atomic_write(str(target)) as tmp:
        open(tmp, 'wb').write(b'new')
    assert target.read_bytes() == b'new' and strays(tmp_path) == []
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_atomic_write_never_reuses_an_existing_temp_name(tmp_path):
    users = [precious(tmp_path / n) for n in ('out.pth.tmp', '.out.partial.pth', 'out.tmp')]
    with atomic_write(str(tmp_path / 'out.pth')) as tmp:
        assert all(str(u) != tmp for u in users)
        open(tmp, 'wb').write(b'x')
    assert all(u.read_bytes() == PRECIOUS for u in users)


# ---------------------------------------------------------------------- export_onnx.py

def test_export_onnx_never_writes_onto_its_checkpoint(tmp_path):
    from tools.deployment.export_onnx import main
    ckpt = precious(tmp_path / 'ck.onnx')  # a checkpoint that happens to end in .onnx
    for extra in ([], ['--force'], ['--out', str(ckpt), '--force']):
        with pytest.raises(UserError, match='is the checkpoint itself'):
            main([M0_CFG, str(ckpt), '--shape', '64', '64', '--no-check', *extra])
        assert ckpt.read_bytes() == PRECIOUS


def test_export_onnx_refuses_an_existing_output_unless_forced(tmp_path):
    pytest.importorskip('onnx')
    import onnx

    from tools.deployment.export_onnx import main
    ckpt = save_initial_weights(M0_CFG, tmp_path / 'm0.pth')
    out = precious(tmp_path / 'm0.onnx')  # also the default output name
    for argv in ([], ['--out', str(out)]):
        with pytest.raises(UserError, match=f'{out} exists.*--force'):
            main([M0_CFG, str(ckpt), '--shape', '64', '64', '--no-check', *argv])
        assert out.read_bytes() == PRECIOUS
    main([M0_CFG, str(ckpt), '--shape', '64', '64', '--no-check', '--force'])
    assert onnx.load(str(out)).graph.output[0].name == 'logits'
    assert strays(tmp_path) == []


# ----------------------------------------------------------------------- tools/test.py

@pytest.fixture(scope='module')
def shapes_data():
    from micronet_mm.datasets.demo_shapes import ensure_demo_shapes
    return ensure_demo_shapes(osp.join(ROOT, 'data', 'demo_shapes'))


def test_test_py_out_refuses_an_existing_file_unless_forced(shapes_data, tmp_path):
    import pickle

    from tools.test import main
    ckpt = save_initial_weights(SHAPES_CFG, tmp_path / 'm0.pth')
    out = precious(tmp_path / 'results.pkl')
    argv = [SHAPES_CFG, str(ckpt), '--work-dir', str(tmp_path / 'w'), '--out', str(out),
            '--cfg-options', 'test_dataloader.dataset.indices=8',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    with pytest.raises(UserError, match=f'{out} exists.*--force'):
        main(argv)
    assert out.read_bytes() == PRECIOUS
    assert not (tmp_path / 'w').exists()  # refused before anything was built
    main(argv + ['--force'])
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 8  # one prediction per test image
    assert strays(tmp_path) == []


# --------------------------------------------------------------------------- the demos

def test_pose_demo_refuses_an_existing_out_file_unless_forced(tmp_path):
    import mmcv
    pose_demo = load_script('demo/pose_demo.py')
    out = precious(tmp_path / 'pose.jpg')
    argv = ['skimage:astronaut', POSE_CFG, '--box', '130', '20', '380', '512',
            '--out-file', str(out)]
    with pytest.raises(UserError, match=f'{out} exists.*--force'):
        pose_demo.main(argv)
    assert out.read_bytes() == PRECIOUS
    pose_demo.main(argv + ['--force'])
    assert mmcv.imread(str(out)).shape == (512, 512, 3)
    assert strays(tmp_path) == []


@pytest.mark.parametrize('existing', ['overlay.png', 'overlay_classes.png'])
def test_seg_demo_refuses_existing_outputs_unless_forced(tmp_path, existing):
    from PIL import Image
    seg_demo = load_script('demo/seg_demo.py')
    image, ckpt = seg_demo_inputs(tmp_path)
    user = precious(tmp_path / existing)
    argv = [image, SEG_CFG, ckpt, '--out', str(tmp_path / 'overlay.png')]
    with pytest.raises(UserError, match=f'{user} exists.*--force'):
        seg_demo.main(argv)
    assert user.read_bytes() == PRECIOUS
    assert [p.name for p in tmp_path.glob('overlay*.png')] == [existing]  # nothing written
    seg_demo.main(argv + ['--force'])
    assert np.asarray(Image.open(tmp_path / 'overlay.png')).shape == (64, 128, 3)
    assert np.asarray(Image.open(tmp_path / 'overlay_classes.png')).shape == (64, 128)
    assert strays(tmp_path) == []


# ----------------------------------------------------------------- the converter

def test_converter_refuses_a_directory_and_keeps_a_users_tmp_file(tmp_path):
    from reference_state import load_official, official_state

    from tools.model_converters.micronet_official_to_mmpretrain import main
    src = tmp_path / 'official.pth'
    torch.save(official_state(*load_official(), 'm0'), src)
    folder = tmp_path / 'out_dir'
    precious(folder / 'inside.txt')
    with pytest.raises(UserError, match='is a directory'):
        main([str(src), str(folder), '--force'])
    assert (folder / 'inside.txt').read_bytes() == PRECIOUS
    assert strays(tmp_path) == []  # no DST.tmp left behind
    dst = tmp_path / 'ours.pth'
    users_tmp = precious(tmp_path / 'ours.pth.tmp')  # the name the old converter reused
    assert main([str(src), str(dst)]) == 'm0'
    assert users_tmp.read_bytes() == PRECIOUS
    assert 'state_dict' in torch.load(dst, weights_only=True)
    precious(dst)
    main([str(src), str(dst), '--force'])  # --force replaces
    assert torch.load(dst, weights_only=True)['meta']['arch'] == 'm0'


# ------------------------------------------------------------------- demo data roots

def _fill(content):
    def fill(tmp):
        os.makedirs(osp.join(tmp, 'train'))
        with open(osp.join(tmp, 'train', 'a.txt'), 'w') as f:
            f.write(content)
    return fill


def test_write_once_replaces_only_an_unchanged_older_version(tmp_path):
    from micronet_mm.datasets._writer import write_once
    root = tmp_path / 'demo'
    write_once(str(root), '1', _fill('v1'))
    assert (root / 'train' / 'a.txt').read_text() == 'v1'
    write_once(str(root), '2', _fill('v2'))  # ours and unchanged: replaced by the new version
    assert (root / 'train' / 'a.txt').read_text() == 'v2'
    assert (root / 'VERSION').read_text() == '2'
    (root / 'train' / 'a.txt').write_text('edited by the user')
    with pytest.raises(UserError, match='did not write, or changed'):
        write_once(str(root), '3', _fill('v3'))
    assert (root / 'train' / 'a.txt').read_text() == 'edited by the user'
    write_once(str(root), '3', _fill('v3'), force=True)
    assert (root / 'train' / 'a.txt').read_text() == 'v3'
    assert sorted(os.listdir(tmp_path)) == ['demo']  # no temp or old dirs left


def _plant(kind, root):
    """Something in an unchanged demo folder that this tool did not write."""
    if kind == 'empty folder':
        (root / 'train' / 'mine').mkdir()
    elif kind == 'fifo':
        os.mkfifo(root / 'train' / 'pipe')
    elif kind == 'fifo as VERSION':
        (root / 'VERSION').unlink()
        os.mkfifo(root / 'VERSION')
    elif kind == 'fifo as MANIFEST':
        (root / 'MANIFEST').unlink()
        os.mkfifo(root / 'MANIFEST')
    elif kind == 'symlink to a folder':
        (root.parent / 'users').mkdir()
        precious(root.parent / 'users' / 'keep.txt')
        os.symlink(root.parent / 'users', root / 'train' / 'linked')
    elif kind == 'symlink to a file':
        os.symlink(precious(root.parent / 'users.txt'), root / 'train' / 'b.txt')
    elif kind == 'root is a symlink':
        os.rename(root, root.parent / 'real')
        os.symlink(root.parent / 'real', root)


@pytest.mark.parametrize('kind', ['empty folder', 'fifo', 'fifo as VERSION', 'fifo as MANIFEST',
                                  'symlink to a folder', 'symlink to a file',
                                  'root is a symlink'])
def test_write_once_refuses_anything_but_its_own_regular_files(kind, tmp_path):
    """Run in a child with a time limit: opening a FIFO would block forever."""
    root = tmp_path / 'demo'
    code = ('import sys; from micronet_mm.datasets._writer import write_once\n'
            'def fill(tmp):\n'
            '    import os; os.makedirs(os.path.join(tmp, "train"))\n'
            '    open(os.path.join(tmp, "train", "a.txt"), "w").write(sys.argv[2])\n'
            'write_once(sys.argv[1], sys.argv[2], fill)\n')
    subprocess.run([sys.executable, '-c', code, str(root), '1'], cwd=ROOT, check=True,
                   timeout=120)
    _plant(kind, root)
    before = sorted(os.listdir(root if kind != 'root is a symlink' else tmp_path / 'real'))
    proc = subprocess.run([sys.executable, '-c', code, str(root), '2'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and 'DemoDataExistsError' in proc.stderr, proc.stderr[-2000:]
    assert str(root) in proc.stderr.splitlines()[-1]
    if kind == 'root is a symlink':
        assert osp.islink(root) and sorted(os.listdir(tmp_path / 'real')) == before
    else:
        assert sorted(os.listdir(root)) == before and (root / 'VERSION').exists()
    for kept in (tmp_path / 'users' / 'keep.txt', tmp_path / 'users.txt'):
        assert not kept.exists() or kept.read_bytes() == PRECIOUS
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.')]  # no temp dirs left


@pytest.mark.parametrize('kind', ['fifo', 'empty folder', 'symlink to a folder'])
def test_make_demo_data_refuses_what_it_did_not_write(kind, tmp_path):
    """The tool itself, on an older demo folder whose manifest lists nothing: one line naming
    the folder, exit 2, nothing removed, and a FIFO is never opened (it would hang)."""
    old = tmp_path / 'demo_shapes'
    old.mkdir()
    (old / 'VERSION').write_text('0')
    (old / 'MANIFEST').write_text('')
    if kind == 'fifo':
        os.mkfifo(old / 'pipe')
    elif kind == 'empty folder':
        (old / 'mine').mkdir()
    else:
        precious(tmp_path / 'users' / 'keep.txt')
        os.symlink(tmp_path / 'users', old / 'linked')
    proc = subprocess.run([sys.executable, 'tools/data/make_demo_data.py', '--root',
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert_one_line_error(proc.stderr, str(old))
    assert sorted(os.listdir(old)) == sorted(['VERSION', 'MANIFEST', {
        'fifo': 'pipe', 'empty folder': 'mine', 'symlink to a folder': 'linked'}[kind]])
    assert kind != 'fifo' or stat.S_ISFIFO(os.lstat(old / 'pipe').st_mode)
    assert kind != 'symlink to a folder' or (tmp_path / 'users' / 'keep.txt').read_bytes() \
        == PRECIOUS


def test_make_demo_data_keeps_a_users_file_in_an_old_demo_dir(tmp_path):
    old = tmp_path / 'demo_shapes'
    (old / 'VERSION').parent.mkdir()
    (old / 'VERSION').write_text('0')  # an older version, written before manifests
    notes = precious(old / 'my_notes.txt')
    proc = subprocess.run([sys.executable, 'tools/data/make_demo_data.py', '--root',
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert proc.returncode == 2 and len(errors) == 1 and 'Traceback' not in proc.stderr
    assert str(old) in errors[0] and '--force' in errors[0]
    assert notes.read_bytes() == PRECIOUS and (old / 'VERSION').read_text() == '0'


def test_demo_data_never_touches_a_users_partial_dir(tmp_path):
    from micronet_mm.datasets.demo_det import ensure_demo_det
    users = precious(tmp_path / 'demo_det.partial' / 'mine.txt')  # the old temp name
    root = ensure_demo_det(str(tmp_path / 'demo_det'), sizes=(2, 1), image_size=32)
    assert users.read_bytes() == PRECIOUS
    assert (tmp_path / 'demo_det' / 'annotations' / 'val.json').is_file()
    assert osp.isfile(osp.join(root, 'MANIFEST'))
    assert sorted(os.listdir(tmp_path)) == ['demo_det', 'demo_det.partial']


# -------------------------------------------------------------------------- work dirs

def test_train_refuses_a_work_dir_with_checkpoints_unless_resume_or_force(shapes_data,
                                                                          tmp_path):
    from tools.train import main
    work = tmp_path / 'work'
    ckpt, pointer = precious(work / 'epoch_1.pth'), work / 'last_checkpoint'
    pointer.write_text(str(ckpt))
    short = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=32',
             'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
             'default_hooks.checkpoint.interval=1', 'val_dataloader.dataset.indices=8',
             'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False']
    with pytest.raises(UserError, match=rf'{work} already holds checkpoints \(epoch_1.pth, '
                       r'last_checkpoint\).*--resume.*--force'):
        main([SHAPES_CFG, '--work-dir', str(work), *short])
    assert ckpt.read_bytes() == PRECIOUS and pointer.read_text() == str(ckpt)
    assert sorted(os.listdir(work)) == ['epoch_1.pth', 'last_checkpoint']  # no log dir either
    main([SHAPES_CFG, '--work-dir', str(work), '--force', *short])
    assert torch.load(ckpt, weights_only=True)['meta']['epoch'] == 1  # replaced, as asked
    assert strays(work) == []


# --------------------------------------------------------------------------- the benchmark

@pytest.mark.parametrize('existing', ['benchmark.md', 'latency_vs_top1.png'])
def test_benchmark_refuses_existing_outputs_before_measuring(tmp_path, existing, monkeypatch,
                                                             capsys):
    """tools/analysis/benchmark.py run as a script: one line, exit 2, the user's file intact."""
    import runpy

    from conftest import assert_one_line_error
    out = precious(tmp_path / existing)
    path = osp.join(ROOT, 'tools/analysis/benchmark.py')
    monkeypatch.setattr(sys, 'argv', [path, '--out-dir', str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(path, run_name='__main__')
    assert exit_.value.code == 2
    assert_one_line_error(capsys.readouterr().err, f'{out} exists')
    assert out.read_bytes() == PRECIOUS
    assert sorted(os.listdir(tmp_path)) == [existing]  # refused before writing anything

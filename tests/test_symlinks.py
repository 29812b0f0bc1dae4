"""No tool writes through a name it did not create: a symlink planted at every name a tool may
write (its outputs, the temp names it would pick, the copied extension library, fixed temp names
such as ``<name>.tmp``) is replaced or skipped, and the file it points to keeps its content.

Temp names are random; the test makes the first name ``tempfile`` tries a known one
(``planted``) and plants a symlink there before the tool runs."""
import os
import os.path as osp
import tempfile

import numpy as np
import pytest
import torch

from conftest import ROOT
from conftest import (M0_CFG, PRECIOUS, SEG_CFG, load_script, precious, save_initial_weights,
                      seg_demo_inputs)

from micronet_mm.fileio import atomic_file, atomic_write, copy_atomic


@pytest.fixture
def planted_temp_names(monkeypatch):
    """``tempfile`` tries ``planted`` first, then random names (as when a name is taken)."""
    def names():
        yield 'planted'
        yield from tempfile._RandomNameSequence()
    monkeypatch.setattr(tempfile, '_get_candidate_names', names)


def plant(link, target):
    """A symlink at ``link`` to the user's file ``target``."""
    os.symlink(target, link)
    return link


def assert_untouched(victim, folder):
    assert victim.read_bytes() == PRECIOUS, f'{victim} was written through a symlink'
    assert not [p for p in os.listdir(folder) if 'partial' in p and
                not osp.islink(osp.join(folder, p))], os.listdir(folder)


def temp_links(folder, name, victim):
    """Symlinks at the names a writer of ``folder/name`` tries first: ``tempfile``'s
    (``.<stem>.planted.partial<ext>``, a file or a staging folder) and the fixed ones
    (``<name>.tmp``, ``<stem>.tmp-<pid>.<ext>``)."""
    stem, ext = osp.splitext(name)
    names = [f'.{stem}.planted.partial{ext}', f'.{stem}.planted.partial', f'{name}.tmp',
             f'{stem}.tmp-{os.getpid()}{ext}', f'{stem}.tmp-{os.getpid()}.bin']
    return [plant(folder / n, victim) for n in names if not osp.lexists(folder / n)]


def _by_atomic_write(path):
    with atomic_write(str(path)) as tmp:
        with open(tmp, 'wb') as f:
            f.write(b'new')


def _by_atomic_file(path):
    with atomic_file(str(path)) as f:
        f.write(b'new')


def _by_copy_atomic(path):
    source = path.parent / 'source.bin'
    source.write_bytes(b'new')
    copy_atomic(str(source), str(path))


@pytest.mark.parametrize('write', [_by_atomic_write, _by_atomic_file, _by_copy_atomic])
def test_writers_replace_a_symlink_and_never_follow_one(write, tmp_path, planted_temp_names):
    victim = precious(tmp_path / 'users' / 'victim.txt')
    out = tmp_path / 'out' / 'file.bin'
    out.parent.mkdir()
    plant(out, victim)
    links = temp_links(out.parent, out.name, victim)
    write(out)
    assert not out.is_symlink() and out.read_bytes() == b'new'
    assert all(osp.islink(link) for link in links)  # skipped, not replaced or followed
    assert_untouched(victim, out.parent)


# ------------------------------------------------------------------------------ the tools

def _converter(tmp_path, out):
    from reference_state import load_official, official_state

    from tools.model_converters.micronet_official_to_mmpretrain import main
    src = tmp_path / 'official.pth'
    torch.save(official_state(*load_official(), 'm0'), src)
    main([str(src), str(out), '--force'])
    assert 'state_dict' in torch.load(out, weights_only=True)


def _export_onnx(tmp_path, out):
    pytest.importorskip('onnx')
    from tools.deployment.export_onnx import main
    ckpt = save_initial_weights(M0_CFG, tmp_path / 'm0.pth')
    main([M0_CFG, str(ckpt), '--shape', '64', '64', '--no-check', '--out', str(out), '--force'])
    assert out.stat().st_size > 1000


def _seg_demo(tmp_path, out):
    from PIL import Image
    image, ckpt = seg_demo_inputs(tmp_path)
    load_script('demo/seg_demo.py').main([image, SEG_CFG, ckpt, '--out', str(out), '--force'])
    assert np.asarray(Image.open(out)).shape == (64, 128, 3)


TOOLS = {'converter': (_converter, ['ours.pth']),
         'export_onnx': (_export_onnx, ['m0.onnx']),
         'seg_demo': (_seg_demo, ['overlay.png', 'overlay_classes.png'])}


@pytest.mark.parametrize('tool', list(TOOLS))
def test_tools_never_write_through_a_planted_symlink(tool, tmp_path, planted_temp_names):
    run, names = TOOLS[tool]
    victim = precious(tmp_path / 'users' / 'victim.txt')
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    for name in names:
        plant(out_dir / name, victim)
        temp_links(out_dir, name, victim)
    run(tmp_path, out_dir / names[0])
    for name in names:
        assert not (out_dir / name).is_symlink()
    assert_untouched(victim, out_dir)


def test_openvino_export_never_writes_through_a_planted_symlink(tmp_path, planted_temp_names):
    """The IR pair, its staging folder, and the extension library copied next to it (and a fixed
    temp name such as ``libmicronet_openvino.so.tmp``)."""
    pytest.importorskip('openvino')
    from micronet_mm.runtime import openvino as ovrt
    from tools.deployment.export_onnx import main
    victim = precious(tmp_path / 'users' / 'victim.txt')
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    for name in ('model.xml', 'model.bin', ovrt.LIBRARY_NAME):
        plant(out_dir / name, victim)
        temp_links(out_dir, name, victim)
    ckpt = save_initial_weights(M0_CFG, tmp_path / 'm0.pth')
    main([M0_CFG, str(ckpt), '--out', str(out_dir / 'model.xml'), '--backend', 'openvino',
          '--deploy', '--shape', '64', '64', '--force'])
    for name in ('model.xml', 'model.bin', ovrt.LIBRARY_NAME):
        assert not (out_dir / name).is_symlink() and (out_dir / name).stat().st_size > 100
    assert_untouched(victim, out_dir)


def test_show_dir_never_draws_through_a_planted_symlink(tmp_path):
    """``tools/test.py --show-dir``: a symlink at each image name the visualization hook
    writes (learnt from a first run) is replaced, its target untouched."""
    import glob

    from conftest import CASES, N_IMAGES, untrained_checkpoint

    from micronet_mm.datasets.demo_shapes import ensure_demo_shapes
    from tools.test import main
    config = osp.join(ROOT, CASES['cls'][0])
    ensure_demo_shapes(osp.join(ROOT, 'data', 'demo_shapes'))
    ckpt = tmp_path / 'untrained.pth'
    untrained_checkpoint(config, ckpt)
    show = tmp_path / 'vis'
    argv = [config, str(ckpt), '--work-dir', str(tmp_path / 'work'), '--show-dir', str(show),
            '--cfg-options', f'test_dataloader.dataset.indices={N_IMAGES}',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    main(argv)
    pngs = sorted(glob.glob(str(show / '**' / '*.png'), recursive=True))
    assert len(pngs) == N_IMAGES
    victim = precious(tmp_path / 'users' / 'victim.txt')
    for png in pngs:
        os.remove(png)
        plant(png, victim)
    main(argv)
    assert all(osp.isfile(p) and not osp.islink(p) for p in pngs)
    assert_untouched(victim, osp.dirname(pngs[0]))

"""``tools/test.py --show-dir`` draws every test image, for each toolbox's visualization hook
(detection is covered by tests/test_detection.py's demo run)."""
import glob
import os.path as osp

import pytest

from conftest import CASES, N_IMAGES, ROOT, untrained_checkpoint


@pytest.mark.parametrize('task', sorted(CASES))
def test_show_dir_draws_every_test_image(task, tmp_path, capsys):
    import importlib

    from tools.test import main
    config, module, ensure, folder = CASES[task]
    config = osp.join(ROOT, config)
    getattr(importlib.import_module(module), ensure)(osp.join(ROOT, 'data', folder))
    ckpt = tmp_path / 'untrained.pth'
    untrained_checkpoint(config, ckpt)
    show = tmp_path / 'vis'
    main([config, str(ckpt), '--work-dir', str(tmp_path / 'work'), '--show-dir', str(show),
          '--cfg-options', f'test_dataloader.dataset.indices={N_IMAGES}',
          'test_dataloader.batch_size=2', 'test_dataloader.num_workers=0',
          'test_dataloader.persistent_workers=False'])
    pngs = glob.glob(str(show / '**' / '*.png'), recursive=True)
    assert len(pngs) == N_IMAGES, pngs
    # the tool says where they went: the folder that holds every picture
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('Drew ')]
    assert line.startswith(f'Drew {N_IMAGES} test images into ')
    folder = line.split(' into ', 1)[1]
    assert sorted(glob.glob(osp.join(folder, '**', '*.png'), recursive=True)) == sorted(pngs)

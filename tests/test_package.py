"""``pip wheel .`` gives a package that carries its configs, tools and model index (OpenMMLab's
``.mim``), declares its dependencies, and whose startup hook lets a toolbox inferencer load a
checkpoint alone."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest
import torch

from conftest import ROOT

#: what the build reads (pyproject.toml, setup.py) besides the package itself
BUILD_INPUTS = ['pyproject.toml', 'setup.py', 'README.md', 'model-index.yml',
                'micronet_mm_startup.py', 'micronet_mm_post_import.py', 'micronet_mm', 'configs',
                'tools']
DET_CFG = osp.join(ROOT, 'configs', 'det', 'retinanet_micronet_m3_demo-shapes.py')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """Build the wheel from a copy of the checkout (the build writes build/ and egg-info)."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    src.mkdir()
    for name in BUILD_INPUTS:
        path = osp.join(ROOT, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns('__pycache__', '.mim'))
        else:
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(src), '--no-deps',
                    '--no-build-isolation', '--no-index', '-q', '-w', str(tmp / 'dist')],
                   check=True, env=dict(os.environ, PIP_NO_INPUT='1'))
    (path,) = glob.glob(str(tmp / 'dist' / 'micronet_mm-*.whl'))
    return path


def repo_files(folder):
    return {osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, folder, '**', '*'),
                                                   recursive=True)
            if osp.isfile(p) and '__pycache__' not in p}


def test_wheel_carries_configs_tools_and_model_index(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in repo_files('configs') | repo_files('tools') | {'model-index.yml'}:
        assert f'micronet_mm/.mim/{path}' in names, path
    assert 'micronet_mm/converters_paddle.py' in names
    # every native source the installed package builds from (torch op, OpenVINO extension)
    for path in repo_files('micronet_mm/csrc'):
        if path.endswith(('.h', '.hpp', '.cpp', 'CMakeLists.txt')):
            assert path in names, path
    assert 'micronet_mm_startup.py' in names and 'micronet_mm-startup.pth' in names
    assert 'micronet_mm_post_import.py' in names
    assert not [n for n in names if n.startswith('tests/') or '__pycache__' in n]


def test_wheel_declares_its_dependencies(wheel):
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith('.dist-info/METADATA')]
        metadata = Parser().parsestr(z.read(meta).decode())
    requires = [r.split(';')[0].replace(' ', '') for r in metadata.get_all('Requires-Dist')]
    names = {r.split('>')[0].split('<')[0].split('=')[0] for r in requires}
    assert {'torch', 'mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmsegmentation', 'mmpose',
            'numpy'} <= names
    assert 'mmcv<2.2.0,>=2.0.0' in requires or 'mmcv>=2.0.0,<2.2.0' in requires
    assert metadata['Name'] == 'micronet_mm' or metadata['Name'] == 'micronet-mm'


def det_checkpoint(path):
    """A checkpoint as mmengine's Runner writes it: the config in ``meta`` and a message hub
    holding ``HistoryBuffer``s (what torch's weights-only loading refuses by default)."""
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    cfg = Config.fromfile(DET_CFG)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    hub = MessageHub.get_instance('test_package')
    hub.update_scalar('train/loss', 1.0)
    torch.save({'meta': {'cfg': cfg.pretty_text,
                         'dataset_meta': {'classes': cfg.metainfo['classes']}},
                'state_dict': model.state_dict(), 'message_hub': hub.state_dict()}, path)


INFERENCER = '''
import site, sys
sys.path.insert(0, {site!r})
if {with_pth}:
    site.addsitedir({site!r})  # what an installed wheel's site-packages does at start-up
assert 'micronet_mm' not in sys.modules
from mmdet.apis import DetInferencer
try:
    inferencer = DetInferencer(weights={ckpt!r}, device='cpu', show_progress=False)
except Exception as e:
    print('FAILED', type(e).__name__, ' '.join(str(e).split()))
    raise SystemExit(0)
import micronet_mm
assert micronet_mm.__file__.startswith({site!r}), micronet_mm.__file__
print('LOADED', type(inferencer.model).__name__)
'''


@pytest.fixture(scope='module')
def site_dir(wheel, tmp_path_factory):
    """The files that ``pip install`` puts into site-packages."""
    site = tmp_path_factory.mktemp('site')
    zipfile.ZipFile(wheel).extractall(site)
    return site


def test_installed_tools_run_installed_configs(site_dir, tmp_path):
    mim = site_dir / 'micronet_mm' / '.mim'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(site_dir))
    out = subprocess.run([sys.executable, str(mim / 'tools' / 'analysis' / 'get_flops.py'),
                          str(mim / 'configs' / 'pretrain' / 'micronet-m0_8xb64_in1k.py')],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'params 1.020M (1,019,590)' in out.stdout  # README's M0 row


def test_installed_startup_hook_lets_an_inferencer_load_a_checkpoint_alone(site_dir, tmp_path):
    ckpt = tmp_path / 'det.pth'
    det_checkpoint(ckpt)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    procs = {with_pth: subprocess.Popen(  # both at once: each spends its time importing
        [sys.executable, '-c', INFERENCER.format(site=str(site_dir), with_pth=with_pth,
                                                  ckpt=str(ckpt))],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for with_pth in (True, False)}
    out = {k: p.communicate(timeout=300) for k, p in procs.items()}
    for k, p in procs.items():
        assert p.returncode == 0, out[k][1][-2000:]
    assert 'LOADED MicroNetRetinaNet' in out[True][0], out[True]
    # without the hook torch refuses the checkpoint: the hook is what makes it load
    assert 'FAILED' in out[False][0] and 'HistoryBuffer' in out[False][0], out[False]

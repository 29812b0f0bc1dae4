"""Malicious checkpoints, built here, fed to every loading path: each is refused with a clear
error, the process does not crash, and no marker file is ever created. Plus strict loading for
inference and export (a checkpoint of another architecture is refused, naming the counts)."""
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, Forged, assert_one_line_error, run_child, run_forked

CLS_CFG = osp.join(ROOT, 'configs/pretrain/micronet-m0_1xb32_demo-shapes.py')
M3_CFG = osp.join(ROOT, 'configs/pretrain/micronet-m3_8xb64_in1k.py')
POSE_CFG = osp.join(ROOT, 'configs/pose/td-hm_micronet-pose-m0_1xb8-10e_demo-pose-64x48.py')
SEG_CFG = osp.join(ROOT, 'configs/seg/micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-cityscapes-'
                   '128x256.py')
DET_CFG = osp.join(ROOT, 'configs/det/retinanet_micronet_m3_demo-shapes.py')
multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray


def forged_array(dtype, data=b'A' * 8, shape=(1,)):
    """What numpy itself writes for an array, with a dtype and raw bytes of our choice."""
    return Forged((multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                   (1, shape, dtype, False, data)))


# dtypes that numpy's own dtype.__setstate__ (pickle's BUILD) makes "holding objects" while the
# array state still carries raw bytes (flags 1 = NPY_ITEM_REFCOUNT without NPY_LIST_PICKLE): a
# float64 one, and a structured one with an object field, which reads the bytes as a pointer
MUTATED_F8 = Forged((np.dtype, ('f8', False, True), (3, '|', None, None, None, 8, 1, 1)))
STRUCT_OBJECT = Forged((np.dtype, ('V8', False, True),
                        (3, '|', None, ('a',), {'a': (np.dtype('O'), 0)}, 8, 1, 1)))


def config_text(marker):
    return f"open({str(marker)!r}, 'w').write('pwned')\nmodel = dict(type='x')\n"


def payloads(marker):
    """name -> object stored in the checkpoint's ``meta`` (and ``meta['dataset_meta']``)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return {
        'reduce-os-system': Forged((os.system, (f'touch {marker}',))),
        'getattr-ndarray-tofile': Forged((getattr, (np.ndarray, 'tofile'))),
        'getattr-historybuffer-init': Forged((getattr, (HistoryBuffer, '__init__'))),
        'object-array': forged_array(np.dtype('O')),
        'structured-object-array': forged_array(STRUCT_OBJECT),
        'void-array': forged_array(np.dtype('V8')),
        'mutated-dtype-array': forged_array(MUTATED_F8),
        'object-scalar': Forged((multiarray.scalar, (np.dtype('O'), b'A' * 8))),
        'dtype-class-singleton': Forged((type(np.dtype('f8')), (),
                                         (3, '|', None, None, None, 8, 1, 63))),
        'ndarray-new': Forged((np.ndarray, ((1,), 'f8'))),
    }


PAYLOADS = [
    'reduce-os-system', 'getattr-ndarray-tofile', 'getattr-historybuffer-init', 'object-array',
    'structured-object-array', 'void-array', 'mutated-dtype-array', 'object-scalar',
    'dtype-class-singleton', 'ndarray-new']


def write_checkpoint(path, marker, payload: str) -> str:
    if payload == 'config-string':
        text = config_text(marker)
        ckpt = {'state_dict': {}, 'meta': {'cfg': text, 'config': text, 'epoch': 1, 'iter': 1},
                'message_hub': {'log_scalars': {}, 'runtime_info': {'cfg': text},
                                'resumed_keys': {'cfg': True}}}
    else:
        evil = payloads(marker)[payload]
        ckpt = {'state_dict': {}, 'meta': {'dataset_meta': {'classes': evil}, 'x': evil}}
    torch.save(ckpt, path)
    return str(path)


# ----------------------------------------------------------------------------- loading paths

def via_safe_load(path, tmp):
    from micronet_mm.checkpoint import safe_load
    return safe_load(path)


def via_torch_load(path, tmp):  # any torch.load in a process that imported micronet_mm
    import micronet_mm  # noqa: F401
    return torch.load(path, weights_only=True)


def via_mmengine_load_checkpoint(path, tmp):  # load_from and the toolboxes' init_model
    import micronet_mm  # noqa: F401
    from mmengine.runner import load_checkpoint
    return load_checkpoint(torch.nn.Linear(1, 1), path)


def via_init_cfg_pretrained(path, tmp):
    from micronet_mm.models import MicroNet
    MicroNet('m0', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


def via_test_py(path, tmp):
    from tools.test import main
    return main([CLS_CFG, path, '--work-dir', str(tmp / 'work')])


def via_runner_resume(path, tmp):  # what --resume does, on a Runner the parent built once
    return RUNNER[0].resume(path)


def via_train_py_resume(path, tmp):
    from tools.train import main
    return main([CLS_CFG, '--work-dir', str(tmp / 'work'), '--resume', path, '--cfg-options',
                 'train_cfg.max_epochs=1', 'train_cfg.val_interval=100'])


def via_converter(path, tmp):
    from tools.model_converters.micronet_official_to_mmpretrain import main
    return main([path, str(tmp / 'converted.pth')])


def via_export_onnx(path, tmp):
    from tools.deployment.export_onnx import main
    return main([CLS_CFG, path, '--out', str(tmp / 'x.onnx'), '--no-check'])


def via_init_pose_model(path, tmp):
    from micronet_mm.apis import init_pose_model
    return init_pose_model(POSE_CFG, path)


def via_init_segmentor(path, tmp):
    from micronet_mm.apis import init_segmentor
    return init_segmentor(SEG_CFG, path)


def via_inferencer_without_config(path, tmp):  # mmengine's BaseInferencer reads meta['cfg']
    import micronet_mm  # noqa: F401
    from mmdet.apis import DetInferencer
    return DetInferencer(model=None, weights=path, device='cpu')


PATHS = {f.__name__[4:]: f for f in (
    via_safe_load, via_torch_load, via_mmengine_load_checkpoint, via_init_cfg_pretrained,
    via_test_py, via_runner_resume, via_converter, via_export_onnx, via_init_pose_model,
    via_init_segmentor, via_inferencer_without_config)}


RUNNER = []  # the Runner of via_runner_resume, built by the demo_shapes fixture


@pytest.fixture(scope='module', autouse=True)
def preload():
    """Import the toolboxes once here, so that each forked child starts warm."""
    import mmdet.apis  # noqa: F401
    import mmpose.apis  # noqa: F401
    import mmseg.apis  # noqa: F401

    import micronet_mm.apis  # noqa: F401
    import micronet_mm.models  # noqa: F401
    import tools.deployment.export_onnx  # noqa: F401
    import tools.test  # noqa: F401
    import tools.train  # noqa: F401


@pytest.fixture(scope='module')
def demo_shapes(tmp_path_factory):
    """The demo data, and a Runner of its config as tools/train.py builds it."""
    from mmengine.runner import Runner

    from micronet_mm.datasets.demo_shapes import ensure_demo_shapes
    from micronet_mm.tools_common import load_config
    root = ensure_demo_shapes(osp.join(ROOT, 'data', 'demo_shapes'))
    cfg = load_config(CLS_CFG, {'train_cfg.max_epochs': 1})
    cfg.work_dir = str(tmp_path_factory.mktemp('runner'))
    RUNNER[:] = [Runner.from_cfg(cfg)]
    yield root
    RUNNER.clear()


@pytest.mark.parametrize('payload', PAYLOADS)
@pytest.mark.parametrize('where', list(PATHS))
def test_malicious_checkpoint_is_refused(where, payload, tmp_path, demo_shapes):
    marker = tmp_path / 'pwned'
    path = write_checkpoint(tmp_path / f'{payload}.pth', marker, payload)
    code, outcome, classes, message = run_forked(PATHS[where], path, tmp_path)
    assert code == 0, f'the process died (exit code {code}, a signal if negative)'
    assert not marker.exists()
    assert outcome == 'error', f'{payload} loaded through {where}'
    assert 'UnpicklingError' in classes, message
    if where != 'torch_load':  # our layer: a UserError naming the file
        assert 'UnsafeCheckpointError' in classes, message
        first = message.splitlines()[0]
        assert f'checkpoint {path} refused' in first, first


def via_paddle_converter(path, tmp):
    from micronet_mm.converters_paddle import load_pdparams
    return load_pdparams(path)


@pytest.mark.parametrize('payload', [p for p in PAYLOADS if p != 'getattr-historybuffer-init'])
def test_malicious_pdparams_is_refused(payload, tmp_path):
    """The PaddleClas reader (a plain pickle, its own unpickler) uses the same numpy guards."""
    marker = tmp_path / 'pwned'
    path = tmp_path / f'{payload}.pdparams'
    with open(path, 'wb') as f:
        pickle.dump({'a.weight': np.zeros(3, np.float32), 'b.weight': payloads(marker)[payload]},
                    f, protocol=2)
    code, outcome, classes, message = run_forked(via_paddle_converter, str(path), tmp_path)
    assert code == 0, f'the process died (exit code {code}, a signal if negative)'
    assert not marker.exists()
    assert outcome == 'error' and 'ConversionError' in classes and 'refused' in message, message


@pytest.mark.parametrize('where', [*PATHS, 'train_py_resume'])
def test_config_text_in_checkpoint_is_never_executed(where, tmp_path, demo_shapes):
    marker = tmp_path / 'pwned'
    path = write_checkpoint(tmp_path / 'config.pth', marker, 'config-string')
    fn = PATHS.get(where, via_train_py_resume)
    code, outcome, classes, message = run_forked(fn, path, tmp_path)
    assert code == 0 and not marker.exists(), message
    if where == 'inferencer_without_config':  # it would have built the model from that text
        assert outcome == 'error' and 'config' in message.lower()


def test_stored_config_code_is_dropped_and_the_payload_is_live(tmp_path):
    """The payload does run when mmengine parses it (the danger is real); safe_load drops it."""
    from mmengine.config import Config

    from micronet_mm.checkpoint import safe_load
    marker = tmp_path / 'pwned'
    ckpt = safe_load(write_checkpoint(tmp_path / 'c.pth', marker, 'config-string'))
    assert 'cfg' not in ckpt['meta'] and 'config' not in ckpt['meta']
    assert 'cfg' not in ckpt['message_hub']['runtime_info'] and ckpt['meta']['epoch'] == 1
    assert not marker.exists()
    Config.fromstring(config_text(marker), file_format='.py')
    assert marker.read_text() == 'pwned'


@pytest.mark.parametrize('task', ['det', 'seg', 'pose', 'cls'])
def test_stored_config_data_survives_as_literal_text(task, tmp_path):
    """What mmengine stores (``cfg.pretty_text``) is kept as literal-only text with the same
    content (less what only a training run uses), so that an inferencer given only the
    checkpoint still builds the model: every type in our configs is a registered one."""
    from mmengine.config import Config

    from micronet_mm.checkpoint import safe_load
    from micronet_mm.stored_config import RUN_KEYS, _without_init
    cfg = Config.fromfile(TASK_CFGS[task])
    torch.save({'meta': {'cfg': cfg.pretty_text}}, tmp_path / 'det.pth')
    text = safe_load(tmp_path / 'det.pth')['meta']['cfg']
    assert 'dict(' not in text and text != cfg.pretty_text
    again = Config.fromstring(text, file_format='.py')
    assert again.model.to_dict() == _without_init(cfg.model.to_dict())
    assert again.custom_imports.imports == ['micronet_mm.models']
    assert set(cfg) - set(again) <= set(RUN_KEYS)


@pytest.mark.parametrize('text', [
    "custom_imports = dict(imports=['os'])\nmodel = dict(type='X')\n",
    "_base_ = ['/tmp/evil.py']\n",
    "import os\nmodel = dict(type='X')\n",
    "model = dict(type=__import__('os').getcwd())\n",
    "model = [x for x in range(3)]\n",
    "model = dict(**{'type': 'X'})\n"])
def test_stored_config_that_is_not_plain_data_is_dropped(text, tmp_path):
    from micronet_mm.checkpoint import safe_load
    torch.save({'meta': {'cfg': text, 'epoch': 3}}, tmp_path / 'c.pth')
    assert safe_load(tmp_path / 'c.pth')['meta'] == {'epoch': 3}


# ----------------------------------------------- types named by a config stored in a checkpoint

def type_payloads(marker):
    """name -> (type, arguments): each would write ``marker`` if mmengine built it."""
    return {
        'os.system': ('os.system', {'command': f'touch {marker}'}),
        'posix.system': ('posix.system', {'command': f'touch {marker}'}),
        'subprocess.call': ('subprocess.call', {'args': ['touch', str(marker)]}),
        'builtins.open': ('builtins.open', {'file': str(marker), 'mode': 'w'}),
        'builtins.exec': ('builtins.exec', {'source': f'open({str(marker)!r}, "w")'}),
        'mmdet.os.system': ('mmdet.os.system', {'command': f'touch {marker}'}),
        'mmengine.mkdir_or_exist': ('mmengine.utils.mkdir_or_exist', {'dir_name': str(marker)}),
        'mmengine.fileio.dump': ('mmengine.fileio.dump', {'obj': 'x', 'file': str(marker)}),
        'mmengine.unregistered': ('mmengine.NoSuchType', {}),
        'unscoped.unregistered': ('NoSuchType', {}),
    }


TYPE_PAYLOADS = list(type_payloads('m'))
#: where a payload goes in the stored config (key paths; ``custom_hooks[0]`` is added)
PLACES = ['model', 'model.backbone', 'model.data_preprocessor', 'model.backbone.init_cfg',
          'test_dataloader.dataset.pipeline[0]', 'visualizer', 'visualizer.vis_backends[0]',
          'default_hooks.checkpoint', 'custom_hooks[0]', 'param_scheduler[0]']
TASK_CFGS = {'det': DET_CFG, 'seg': SEG_CFG, 'pose': POSE_CFG, 'cls': CLS_CFG}


def _place(cfg: dict, place: str, value: dict) -> None:
    """Put ``value`` (a type and its arguments) at ``place`` in the config dict."""
    keys = re.findall(r'[^.\[\]]+', place)
    node = cfg
    if keys[0] == 'custom_hooks':
        cfg.setdefault('custom_hooks', [{}])
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = dict(value)
    else:
        node[last] = {**(node.get(last) or {}), **value}


def hostile_checkpoint(path, marker, payload='os.system', place='model.backbone', task='det',
                       key='cfg'):
    """A checkpoint as mmengine writes it (the config as literal text in ``meta``), with the
    payload's type at ``place`` of its stored config."""
    from mmengine.config import Config
    cfg = Config.fromfile(TASK_CFGS[task]).to_dict()
    kind, args = type_payloads(marker)[payload]
    _place(cfg, place, {'type': kind, **args})
    text = ''.join(f'{k} = {v!r}\n' for k, v in cfg.items())
    torch.save({'state_dict': {}, 'meta': {key: text, 'epoch': 1}}, path)
    return str(path)


def via_det_inferencer(path, tmp):
    import micronet_mm  # noqa: F401
    from mmdet.apis import DetInferencer
    return DetInferencer(weights=path, device='cpu', show_progress=False)


def via_seg_inferencer(path, tmp):
    import micronet_mm  # noqa: F401
    from mmseg.apis import MMSegInferencer
    return MMSegInferencer(model=None, weights=path, device='cpu')


def via_pose_inferencer(path, tmp):
    import micronet_mm  # noqa: F401
    from mmpose.apis.inferencers import Pose2DInferencer
    return Pose2DInferencer(model=None, weights=path, device='cpu')


#: every path that reads a checkpoint, with the task of the config stored in it
TYPE_PATHS = {
    'safe_load': (via_safe_load, 'det'), 'torch_load': (via_torch_load, 'det'),
    'mmengine_load_checkpoint': (via_mmengine_load_checkpoint, 'det'),
    'det_inferencer': (via_det_inferencer, 'det'), 'seg_inferencer': (via_seg_inferencer, 'seg'),
    'pose_inferencer': (via_pose_inferencer, 'pose'),
    'init_segmentor': (via_init_segmentor, 'seg'), 'init_pose_model': (via_init_pose_model, 'pose'),
    'test_py': (via_test_py, 'cls'), 'runner_resume': (via_runner_resume, 'cls'),
    'export_onnx': (via_export_onnx, 'cls'),
}


def assert_type_refused(result, path, marker, place):
    code, outcome, classes, message = result
    assert code == 0, f'the process died (exit code {code})'
    assert not osp.lexists(marker), f'the payload ran: {message}'
    assert outcome == 'error' and 'UnsafeCheckpointError' in classes, message
    first = message.splitlines()[0]
    assert f'checkpoint {path} refused' in first and place.split('[')[0] in first, first


@pytest.mark.parametrize('payload', TYPE_PAYLOADS)
@pytest.mark.parametrize('where', list(TYPE_PATHS))
def test_stored_config_type_is_refused_on_every_path(where, payload, tmp_path, demo_shapes):
    fn, task = TYPE_PATHS[where]
    marker = tmp_path / 'pwned'
    path = hostile_checkpoint(tmp_path / 'hostile.pth', marker, payload, 'model.backbone', task)
    if where == 'torch_load':  # torch.load itself does not read configs: nothing is built
        code, outcome, _, message = run_forked(fn, path, tmp_path)
        assert code == 0 and not osp.lexists(marker), message
        return
    assert_type_refused(run_forked(fn, path, tmp_path), path, marker, 'model.backbone.type')


@pytest.mark.parametrize('place', PLACES)
@pytest.mark.parametrize('where', ['safe_load', 'det_inferencer'])
def test_stored_config_type_is_refused_anywhere_in_it(where, place, tmp_path):
    fn, task = TYPE_PATHS[where]
    marker = tmp_path / 'pwned'
    path = hostile_checkpoint(tmp_path / 'hostile.pth', marker, 'subprocess.call', place, task)
    assert_type_refused(run_forked(fn, path, tmp_path), path, marker, f'{place}.type')


@pytest.mark.parametrize('key', ['cfg', 'config'])
@pytest.mark.parametrize('text', [
    "model = dict(type='RetinaNet', _scope_='os')\n",
    "default_scope = 'antigravity'\nmodel = dict(type='RetinaNet')\n",
    "model = dict(type=['os.system'])\n",
    "model = dict(type='RetinaNet', backbone=dict(type='mmdet.RetinaNet.os'))\n",
    "model = dict(type='RetinaNet', teacher_config='/usr/lib/python3/evil.py')\n",
    "model = dict(type='RetinaNet', backbone=dict(type='ResNet', ckpt='https://x/y.pth'))\n",
    "test_dataloader = dict(dataset=dict(metainfo=dict(from_file='/home/u/script.py')))\n",
    "train_dataloader = dict(dataset=dict(metainfo=dict(from_file='tools/train.py')))\n",
])
def test_stored_config_scopes_and_files_are_refused(key, text, tmp_path):
    from micronet_mm.checkpoint import UnsafeCheckpointError, safe_load
    import mmdet.models  # noqa: F401  (RetinaNet registered)
    torch.save({'meta': {key: text}}, tmp_path / 'c.pth')
    with pytest.raises(UnsafeCheckpointError, match=re.escape(str(tmp_path / 'c.pth'))
                       + '.*' + re.escape(f"meta['{key}']")):
        safe_load(tmp_path / 'c.pth')


def test_stored_config_type_payloads_are_live(tmp_path):
    """The control: built by mmengine without the check, the payload runs."""
    from mmengine.registry import MODELS
    marker = tmp_path / 'pwned'
    kind, args = type_payloads(marker)['subprocess.call']
    try:
        MODELS.build({'type': kind, **args})
    except Exception:  # noqa: BLE001  (what it returns is no model; it has run by then)
        pass
    assert marker.exists()


def test_stored_config_run_settings_are_removed(tmp_path):
    """What a training run reads or writes never reaches an inferencer."""
    from mmengine.config import Config

    from micronet_mm.checkpoint import safe_load
    cfg = Config.fromfile(DET_CFG).to_dict()
    cfg.update(load_from='/x/other.pth', resume=True, work_dir='/home/user/.ssh',
               custom_hooks=[dict(type='EMAHook')])
    cfg['visualizer'] = {**cfg['visualizer'], 'save_dir': '/home/user/.ssh'}
    cfg['model']['backbone']['init_cfg'] = dict(type='Pretrained', checkpoint='https://x/y.pth')
    torch.save({'meta': {'cfg': ''.join(f'{k} = {v!r}\n' for k, v in cfg.items())}},
               tmp_path / 'c.pth')
    again = Config.fromstring(safe_load(tmp_path / 'c.pth')['meta']['cfg'], file_format='.py')
    for key in ('load_from', 'resume', 'work_dir', 'default_hooks', 'custom_hooks'):
        assert key not in again
    assert 'save_dir' not in again.visualizer and 'vis_backends' not in again.visualizer
    assert 'init_cfg' not in again.model.backbone
    assert again.model.backbone.type == cfg['model']['backbone']['type']


def test_stored_config_type_refusal_is_one_line_on_the_command_line(tmp_path, demo_shapes):
    marker = tmp_path / 'pwned'
    path = hostile_checkpoint(tmp_path / 'hostile.pth', marker, 'os.system', 'model', 'cls')
    proc = cli('tools/test.py', CLS_CFG, path, '--work-dir', str(tmp_path / 'work'))
    assert proc.returncode == 2 and not marker.exists(), proc.stderr[-3000:]
    assert_one_line_error(proc.stderr, path)
    assert 'model.type' in proc.stderr


def test_forged_object_array_crashes_an_unguarded_load(tmp_path):
    """The control: without the guards, the object-array payload takes the process down."""
    path = write_checkpoint(tmp_path / 'o.pth', tmp_path / 'pwned', 'structured-object-array')
    code = ('import torch, sys; c = torch.load(sys.argv[1], weights_only=False); '
            'print(repr(c["meta"]["x"]))')  # reading the bytes as a PyObject pointer
    proc = subprocess.run([sys.executable, '-c', code, path], capture_output=True, timeout=120)
    assert proc.returncode < 0  # killed by a signal (SIGSEGV)


def test_numeric_numpy_data_of_mmengine_checkpoints_loads(tmp_path):
    """What mmengine writes (HistoryBuffer with arrays, numpy scalars) loads as plain numpy,
    and saves again without micronet_mm's stand-ins in the file."""
    from mmengine.logging.history_buffer import HistoryBuffer

    from micronet_mm.checkpoint import safe_load
    buf = HistoryBuffer()
    for v in (1.0, 2.0, 4.0):
        buf.update(v)
    data = {'buf': buf, 'f': np.float64(0.5), 'i': np.int64(3), 'b': np.bool_(True),
            'a': {k: np.arange(4).astype(k) for k in ('f2', 'f4', 'u1', 'i2', 'c8', '?', '>f8',
                                                        '>i4')}}
    torch.save({'meta': data}, tmp_path / 'ok.pth')
    meta = safe_load(tmp_path / 'ok.pth')['meta']
    assert meta['buf'].mean() == pytest.approx(7 / 3) and meta['f'] == 0.5 and meta['i'] == 3
    for k, arr in meta['a'].items():
        assert type(arr) is np.ndarray and arr.dtype.name == np.dtype(k).name
        assert np.array_equal(arr, np.arange(4).astype(k))
    assert type(meta['buf']._log_history) is np.ndarray
    raw = pickle.dumps(meta)
    assert b'micronet_mm' not in raw and b'_CheckedArray' not in raw


@pytest.mark.parametrize('raw', [np.ndarray, np.dtype, multiarray._reconstruct,
                                 type(np.dtype('f8')), getattr])
def test_raw_numpy_globals_registered_elsewhere_are_kept_and_loading_refused(tmp_path, raw):
    """Someone registering the real numpy.ndarray / numpy.dtype would reopen the hole: their
    entry stays (not ours to remove), and safe_load refuses with one line instead."""
    import micronet_mm.checkpoint as ck
    torch.save({'state_dict': {}}, tmp_path / 'ok.pth')
    with torch.serialization.safe_globals([raw]):
        ck.allow_mmengine_checkpoints()
        registered = torch.serialization.get_safe_globals()
        assert raw in registered
        assert (ck._CheckedArray, 'numpy.ndarray') in registered
        with pytest.raises(ck.UnsafeCheckpointError, match=r'ok\.pth not loaded: .*unguarded'):
            ck.safe_load(tmp_path / 'ok.pth')
    assert ck.safe_load(tmp_path / 'ok.pth') == {'state_dict': {}}


# ------------------------------------------------------------------- strict loading for inference

def classifier_checkpoint(config, path):
    from mmengine.config import Config

    from micronet_mm.tools_common import build_model
    model = build_model(Config.fromfile(config))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


def test_export_refuses_another_architecture_and_loads_its_own(tmp_path):
    from micronet_mm.checkpoint import CheckpointMismatchError
    from tools.deployment.export_onnx import main
    m0 = classifier_checkpoint(CLS_CFG, tmp_path / 'm0.pth')
    with pytest.raises(CheckpointMismatchError,
                       match=r'm0\.pth does not fit the model \(\d+ weights\): \d+ missing .*'
                             r'\d+ unexpected .*\d+ mis-shaped'):
        main([M3_CFG, m0, '--out', str(tmp_path / 'm3.onnx'), '--no-check'])
    assert not (tmp_path / 'm3.onnx').exists()
    main([CLS_CFG, m0, '--out', str(tmp_path / 'm0.onnx'), '--no-check'])
    assert (tmp_path / 'm0.onnx').stat().st_size > 0


def test_test_py_refuses_another_architecture(tmp_path, demo_shapes):
    from micronet_mm.checkpoint import CheckpointMismatchError
    from tools.test import main
    m3 = classifier_checkpoint(M3_CFG, tmp_path / 'm3.pth')
    with pytest.raises(CheckpointMismatchError, match=r'm3\.pth does not fit .* mis-shaped'):
        main([CLS_CFG, m3, '--work-dir', str(tmp_path / 'work')])


def test_apis_are_strict_unless_asked_not_to_be(tmp_path):
    from micronet_mm.apis import init_pose_model, init_segmentor
    from micronet_mm.checkpoint import CheckpointMismatchError
    cls = classifier_checkpoint(CLS_CFG, tmp_path / 'cls.pth')
    with pytest.raises(CheckpointMismatchError, match=r'cls\.pth does not fit .* missing'):
        init_segmentor(SEG_CFG, cls)
    with pytest.raises(CheckpointMismatchError, match=r'cls\.pth does not fit .* missing'):
        init_pose_model(POSE_CFG, cls)
    model = init_pose_model(POSE_CFG, cls, strict=False)  # warns, loads what fits
    assert model.dataset_meta['num_keypoints'] == 17


def test_missing_unexpected_and_mis_shaped_are_counted():
    from micronet_mm.checkpoint import compare_weights
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state['1.weight'], state['1.num_batches_tracked']
    state['0.weight'] = torch.zeros(4, 2)
    state['extra'] = torch.zeros(1)
    diff = compare_weights(model, {f'module.{k}' if k == 'extra' else k: v
                                   for k, v in state.items()})
    assert diff == {'missing': ['1.weight'], 'unexpected': ['module.extra'],
                    'mis-shaped': ['0.weight: (4, 2) vs (3, 2)']}


# ------------------------------------------------------------------------ command-line failures

def cli(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})


TOOLS = ['tools/test.py', 'tools/deployment/export_onnx.py',
         'tools/model_converters/micronet_official_to_mmpretrain.py']


def bad_checkpoint(tmp_path, content: str) -> str:
    path = tmp_path / f'{content}.pth'
    if content == 'empty':
        path.write_bytes(b'')
    elif content == 'truncated':
        torch.save({'state_dict': {'w': torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif content == 'text':
        path.write_text('not a checkpoint\n')
    else:
        write_checkpoint(path, tmp_path / 'pwned', 'object-array')
    return str(path)


def tool_args(tool: str, path: str, tmp_path) -> list[str]:
    if 'converters' in tool:
        return [path, str(tmp_path / 'out.pth')]
    if tool == 'tools/test.py':
        return [CLS_CFG, path, '--work-dir', str(tmp_path / 'work')]
    return [CLS_CFG, path, '--out', str(tmp_path / 'out.onnx')]


@pytest.mark.parametrize('content, message', [
    ('empty', 'is an empty file'), ('truncated', 'truncated, corrupt or not a PyTorch file'),
    ('text', 'truncated, corrupt or not a PyTorch file'), ('object-array', 'refused')])
@pytest.mark.parametrize('tool', TOOLS)
def test_bad_checkpoint_names_itself(tool, content, message, tmp_path, demo_shapes):
    import importlib

    from micronet_mm.checkpoint import CheckpointError
    main = importlib.import_module(tool[:-3].replace('/', '.')).main
    path = bad_checkpoint(tmp_path, content)
    with pytest.raises(CheckpointError, match=re.escape(path) + '.*' + re.escape(message)):
        main(tool_args(tool, path, tmp_path))


@pytest.mark.parametrize('tool, content', [('tools/test.py', 'empty'), (TOOLS[2], 'empty')])
def test_bad_checkpoint_is_one_line_exit_2(tool, content, tmp_path, demo_shapes):
    path = bad_checkpoint(tmp_path, content)
    proc = cli(tool, *tool_args(tool, path, tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert_one_line_error(proc.stderr, path)


def test_a_run_config_of_tools_train_is_accepted_in_a_fresh_process(tmp_path):
    """What ``tools/train.py`` writes into every checkpoint (its own hook, loop, sampler and
    dataset types, registered by micronet_mm.resume) passes the stored-config check in a
    process that never imported those modules, as ``tools/test.py`` on the demo checkpoint
    runs it: micronet_mm's registering modules are looked up like the toolboxes' own."""
    from mmengine.config import Config

    from micronet_mm.resume import prepare_resumable
    cfg = Config.fromfile(DET_CFG)
    assert prepare_resumable(cfg)
    text = ''.join(f'{k} = {v!r}\n' for k, v in cfg.to_dict().items())
    for name in ('RNGStateHook', 'ResumableEpochBasedTrainLoop', 'ResumableSampler',
                 'SeededDataset'):
        assert name in text
    torch.save({'meta': {'cfg': text}}, tmp_path / 'run.pth')
    run_child(f'''
import sys
import micronet_mm
from micronet_mm.checkpoint import safe_load
assert 'micronet_mm.resume' not in sys.modules
cfg = safe_load({str(tmp_path / 'run.pth')!r})['meta']['cfg']
assert 'RNGStateHook' not in cfg and 'ResumableSampler' in cfg, cfg  # hooks dropped, data kept
''')

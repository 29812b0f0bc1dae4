"""PaddleClas ``.pdparams`` files convert to ours with PaddleClas's own logits, and hostile
pickles are refused without running anything.

``tests/data/paddleclas_reference.json`` and ``paddleclas_tiny_*.pdparams`` were written by
paddle itself (tools/model_converters/make_paddleclas_fixture.py, PaddleClas at the commit the
JSON names); paddle is not needed here."""
import json
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from conftest import ARCHS, OFFICIAL_REFERENCE as OFFICIAL, ROOT, build_classifier
from micronet_mm.converters import ConversionError
from micronet_mm.converters_paddle import load_pdparams, paddle_to_official
from micronet_mm.errors import UserError
from paddleclas_state import paddle_layout, write_pdparams
from reference_state import make_input, make_state

DATA = osp.join(ROOT, 'tests', 'data')
with open(osp.join(DATA, 'paddleclas_reference.json')) as f:
    PADDLE = json.load(f)


def convert(argv):
    from tools.model_converters.micronet_paddleclas_to_mmpretrain import main
    return main([str(a) for a in argv])


def reference_params(arch):
    return paddle_layout(make_state([(k, s) for k, s in OFFICIAL[arch]['keys']]))


def test_fixture_comes_from_pinned_paddleclas():
    assert len(PADDLE['paddleclas_commit']) == 40
    assert sorted(PADDLE['variants']) == ARCHS


@pytest.mark.parametrize('arch', ARCHS)
def test_paddleclas_keys_are_the_official_keys(arch):
    """PaddleClas's key/shape list is exactly our PaddleClas layout of the official list, and
    maps back onto the official list (less ``num_batches_tracked``, which we add)."""
    paddle_keys = [(k, s) for k, s in PADDLE['variants'][arch]['keys']]
    ours = [(k, list(v.shape)) for k, v in reference_params(arch).items()]
    assert ours == paddle_keys
    official = [(k, s) for k, s in OFFICIAL[arch]['keys']]
    mapped = paddle_to_official({k: np.zeros(s, np.float32) for k, s in paddle_keys})
    assert [(k, list(v.shape)) for k, v in mapped.items()] == official


@pytest.mark.parametrize('arch', ARCHS)
def test_converted_model_reproduces_paddleclas_logits(arch, tmp_path):
    src, dst = tmp_path / f'MicroNet_{arch.upper()}_pretrained.pdparams', tmp_path / 'ours.pth'
    write_pdparams(reference_params(arch), src)
    assert convert([src, dst]) == arch  # detected from the shapes
    model = build_classifier(arch)
    ckpt = torch.load(dst, weights_only=True)
    missing, unexpected = model.load_state_dict(ckpt['state_dict'], strict=True)
    assert not missing and not unexpected
    assert ckpt['meta']['arch'] == arch
    with torch.no_grad():
        logits = model(make_input(), mode='tensor')
    expected = torch.tensor(PADDLE['variants'][arch]['logits'], dtype=torch.float32)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert expected.abs().max() > 0.1  # not a comparison of near-zero numbers


@pytest.mark.parametrize('name', PADDLE['tiny']['files'])
def test_genuine_paddle_save_files_are_read(name):
    arrays = load_pdparams(osp.join(DATA, name))
    expected = PADDLE['tiny']['arrays']
    assert list(arrays) == list(expected)  # the name table is dropped
    for key, rec in expected.items():
        assert arrays[key].dtype == np.dtype(rec['dtype'])
        np.testing.assert_array_equal(arrays[key].ravel(), np.array(rec['values'], np.float32))
        assert list(arrays[key].shape) == rec['shape']


def test_numpy1_module_name_is_read(tmp_path):
    """numpy 1 (PaddleClas's files are from 2022) pickles ``numpy.core.multiarray``."""
    data = (open(osp.join(DATA, 'paddleclas_tiny_p2.pdparams'), 'rb').read())
    assert b'numpy._core.multiarray' in data
    path = tmp_path / 'numpy1.pdparams'
    path.write_bytes(data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    assert list(load_pdparams(str(path))) == list(PADDLE['tiny']['arrays'])


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _hostile_files(tmp_path):
    marker = tmp_path / 'pwned'
    weights = np.zeros(3, np.float32)
    yield 'os.system', {'a.weight': weights, 'b.weight': _System(marker)}, 'refused global'
    yield 'object array', {'a.weight': np.array([1, _System(marker)], dtype=object)}, \
        'refused'
    yield 'string array', {'a.weight': np.array(['x'])}, 'refused numpy dtype'
    yield 'not a dict', [weights], 'expected a non-empty dict'
    yield 'python object value', {'a.weight': {'nested': 1}}, 'not a numpy array'


@pytest.mark.parametrize('protocol', [2, 4])
def test_hostile_pdparams_are_refused_without_running_code(tmp_path, protocol):
    for what, obj, message in _hostile_files(tmp_path):
        src = tmp_path / f'{what}.pdparams'
        with open(src, 'wb') as f:
            pickle.dump(obj, f, protocol=protocol)
        with pytest.raises(UserError, match=message):
            convert([src, tmp_path / 'out.pth'])
        assert not (tmp_path / 'pwned').exists(), what
        assert not (tmp_path / 'out.pth').exists(), what


def test_does_not_overwrite_and_force_does(tmp_path):
    src, dst = tmp_path / 'm0.pdparams', tmp_path / 'ours.pth'
    write_pdparams(reference_params('m0'), src)
    dst.write_text('precious')
    with pytest.raises(UserError, match='exists; not overwriting it'):
        convert([src, dst])
    assert dst.read_text() == 'precious'
    assert convert([src, dst, '--force']) == 'm0'
    assert 'state_dict' in torch.load(dst, weights_only=True)
    assert sorted(os.listdir(tmp_path)) == ['m0.pdparams', 'ours.pth']  # no temporary left


def test_wrong_arch_and_bad_files_are_one_clear_error(tmp_path):
    src = tmp_path / 'm1.pdparams'
    params = reference_params('m1')
    write_pdparams(params, src)
    with pytest.raises(UserError, match="does not match MicroNet arch 'm2'"):
        convert([src, tmp_path / 'a.pth', '--arch', 'm2'])
    del params['features.5.layers.1.fc.0.weight']
    write_pdparams(params, src)
    with pytest.raises(UserError, match='missing keys .*backbone.stages.3.0.act1.fc.0.weight'):
        convert([src, tmp_path / 'a.pth'])
    src.write_bytes(src.read_bytes()[:3000])
    with pytest.raises(UserError, match='cannot read .* as a .pdparams file'):
        convert([src, tmp_path / 'a.pth'])
    with pytest.raises(UserError, match='cannot read .*nothing.pdparams'):
        convert([tmp_path / 'nothing.pdparams', tmp_path / 'a.pth'])
    with pytest.raises(ConversionError, match='not a parameter file'):
        load_pdparams(str(_pickled(tmp_path, {'a': (1, 2)})))


def _pickled(tmp_path, obj):
    path = tmp_path / 'obj.pdparams'
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path

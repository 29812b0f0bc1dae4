"""One-off: write the PaddleClas parity fixture that tests/test_paddleclas.py reads.

Never run by the tests, and not needed to use the converter. It needs ``paddlepaddle`` in a
separate virtual environment (never the project's own) and PaddleClas's MicroNet source::

    python3.11 -m venv /tmp/paddle-venv
    /tmp/paddle-venv/bin/pip install paddlepaddle==3.3.1 numpy torch  # torch: reference_state.py
    git --git-dir=<PaddleClas.git> show \\
        d178931fca432204e6b7422bac4f92e09ff22fa4:ppcls/arch/backbone/model_zoo/micronet.py \\
        > /tmp/paddleclas_micronet.py
    /tmp/paddle-venv/bin/python tools/model_converters/make_paddleclas_fixture.py \\
        /tmp/paddleclas_micronet.py --commit d178931fca432204e6b7422bac4f92e09ff22fa4

What it writes under ``tests/data/``:

- ``paddleclas_reference.json``: per variant M0-M3, PaddleClas's state-dict keys and shapes in
  order, and the logits PaddleClas computes on ``reference_state.make_input()`` (224x224) with
  the weights of the official reference fixture (``reference_state.official_state``: drawn
  weights and the BN statistics calibrated with the official code, see
  ``make_official_fixture.py``), put into PaddleClas's layout by
  ``paddleclas_state.paddle_layout``. The test rebuilds the same weights, writes them as a
  ``.pdparams`` file, converts it and must reproduce these logits.
- ``paddleclas_tiny_p{2,3,4}.pdparams``: genuine ``paddle.save`` files (pickle protocols 2, 3,
  4) of a tiny Linear + BatchNorm1D layer, and ``paddleclas_tiny_tuples.pdparams``: the same
  through ``paddle.framework.io._pickle_save``, which writes every tensor as a
  ``(name, ndarray)`` tuple (paddle 2.1's format); their arrays are in the JSON file.

The PaddleClas file is imported on its own: its only import from the rest of PaddleClas
(``....utils.save_load.load_dygraph_pretrain``, used to download weights) is given a stand-in
that refuses, so nothing is downloaded.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os.path as osp
import sys
import types

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tests'))
sys.path.insert(0, ROOT)

from micronet_mm.fileio import atomic_file, atomic_write  # noqa: E402

FACTORIES = {'m0': 'MicroNet_M0', 'm1': 'MicroNet_M1', 'm2': 'MicroNet_M2', 'm3': 'MicroNet_M3'}


def import_paddleclas_micronet(path: str) -> types.ModuleType:
    """Import PaddleClas's ``micronet.py`` as ``ppcls.arch.backbone.model_zoo.micronet``."""
    def refuse(*args, **kwargs):
        raise RuntimeError('the fixture never loads pretrained PaddleClas weights')

    for name in ('ppcls', 'ppcls.arch', 'ppcls.arch.backbone', 'ppcls.arch.backbone.model_zoo',
                 'ppcls.utils'):
        package = types.ModuleType(name)
        package.__path__ = []
        sys.modules[name] = package
    save_load = types.ModuleType('ppcls.utils.save_load')
    save_load.load_dygraph_pretrain = refuse
    sys.modules['ppcls.utils.save_load'] = save_load
    name = 'ppcls.arch.backbone.model_zoo.micronet'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def variant_record(paddle, micronet, arch: str, official: dict, arrays: dict) -> dict:
    """PaddleClas's keys, shapes and logits for ``arch`` with the reference weights."""
    from paddleclas_state import paddle_layout
    from reference_state import make_input, official_state
    model = getattr(micronet, FACTORIES[arch])()
    model.eval()
    ours = paddle_layout(official_state(official, arrays, arch))
    theirs = model.state_dict()
    assert list(ours) == list(theirs), 'key order differs from paddleclas_state.paddle_layout'
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in ours.items()})
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), ours[key])
    with paddle.no_grad():
        logits = model(paddle.to_tensor(make_input().numpy())).numpy()
    return {'keys': [[k, list(v.shape)] for k, v in theirs.items()],
            'logits': logits.astype(float).tolist()}


def tiny_files(paddle, out_dir: str) -> dict:
    """Genuine ``paddle.save`` files of a tiny layer; returns their arrays by file name."""
    from paddle.framework.io import _pickle_save
    paddle.seed(0)
    layer = paddle.nn.Sequential(paddle.nn.Linear(3, 2), paddle.nn.BatchNorm1D(2))
    with paddle.no_grad():
        layer[1]._mean.set_value(paddle.to_tensor([0.25, -0.5]))
        layer[1]._variance.set_value(paddle.to_tensor([2.0, 0.5]))
    files = {}
    for protocol in (2, 3, 4):
        files[f'paddleclas_tiny_p{protocol}.pdparams'] = protocol
        with atomic_write(osp.join(out_dir, f'paddleclas_tiny_p{protocol}.pdparams')) as tmp:
            paddle.save(layer.state_dict(), tmp, protocol=protocol)
    with atomic_file(osp.join(out_dir, 'paddleclas_tiny_tuples.pdparams')) as f:
        _pickle_save(dict(layer.state_dict()), f, protocol=2)
    arrays = {k: {'shape': list(v.shape), 'dtype': str(v.numpy().dtype),
                  'values': v.numpy().astype(float).ravel().tolist()}
              for k, v in layer.state_dict().items()}
    return {'files': sorted([*files, 'paddleclas_tiny_tuples.pdparams']), 'arrays': arrays}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('micronet_py', help="PaddleClas's ppcls/arch/backbone/model_zoo/micronet.py")
    parser.add_argument('--commit', required=True, help='the PaddleClas commit it comes from')
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'tests', 'data'))
    args = parser.parse_args(argv)
    import paddle
    paddle.set_device('cpu')
    micronet = import_paddleclas_micronet(args.micronet_py)
    from reference_state import load_official, recorded, sample_index
    official, arrays = load_official()
    record = {'paddleclas_commit': args.commit, 'paddle_version': paddle.__version__,
              'numpy_version': np.__version__,
              'variants': {arch: variant_record(paddle, micronet, arch, official, arrays)
                           for arch in FACTORIES},
              'tiny': tiny_files(paddle, args.out_dir)}
    with atomic_file(osp.join(args.out_dir, 'paddleclas_reference.json'), 'w') as f:
        json.dump(record, f)
    for arch, rec in record['variants'].items():
        logits = np.array(rec['logits'])
        ref = recorded(arrays, arch, 'logits')
        sampled = logits.reshape(-1)[sample_index(logits.size, 'logits')]
        print(f'{arch}: {len(rec["keys"])} keys; max |logit| {np.abs(logits).max():.3f}; '
              f'|paddle - official| at the recorded positions '
              f'{np.abs(sampled - ref["samples"]).max():.2e}')


if __name__ == '__main__':
    main()

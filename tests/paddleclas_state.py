"""The reference weights of reference_state.py in PaddleClas's layout, and ``.pdparams`` files.

PaddleClas's MicroNet has the official state-dict keys in the official order; it differs in
BN statistics (``_mean`` / ``_variance`` for ``running_mean`` / ``running_var``, no
``num_batches_tracked``) and in Linear weights, stored ``[in, out]``. ``paddle.save`` pickles a
dict of numpy arrays plus a ``StructuredToParameterName@@`` table of str -> str.
Used by tests/test_paddleclas.py and tools/model_converters/make_paddleclas_fixture.py.
"""
from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np

_STATS = {'running_mean': '_mean', 'running_var': '_variance'}


def paddle_layout(official: dict) -> OrderedDict:
    """Official-layout tensors -> PaddleClas-layout float32 numpy arrays, in the same order."""
    out = OrderedDict()
    for key, value in official.items():
        head, _, leaf = key.rpartition('.')
        if leaf == 'num_batches_tracked':
            continue
        array = value.numpy()
        if leaf == 'weight' and array.ndim == 2:
            array = array.T
        out[f'{head}.{_STATS.get(leaf, leaf)}'] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def write_pdparams(params: dict, path, protocol: int = 4) -> None:
    """What ``paddle.save(layer.state_dict(), path, protocol)`` writes for these arrays."""
    saved = dict(params)
    saved['StructuredToParameterName@@'] = {k: f'param_{i}' for i, k in enumerate(params)}
    with open(path, 'wb') as f:
        pickle.dump(saved, f, protocol=protocol)

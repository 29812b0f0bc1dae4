"""Deterministic "trained-like" weights in the official checkpoint layout.

``tests/data/official_reference.json`` lists the official model's state-dict keys and shapes and
the logits that the official code (github liyunsheng13/micronet, run outside this repo) computed
with the weights made here from those keys. The converter test rebuilds the same weights, converts
them and compares logits, so no official file or code is needed at test time. numpy's PCG64
stream is stable across versions, so the weights are the same everywhere.
"""
from __future__ import annotations

import numpy as np
import torch

SEED = 2021


def make_state(keys_shapes: list[tuple[str, list[int]]], seed: int = SEED) -> dict:
    """Weights with non-trivial BN statistics, drawn in key order."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in keys_shapes:
        leaf = key.rsplit('.', 1)[-1]
        if leaf == 'num_batches_tracked':
            state[key] = torch.tensor(1000, dtype=torch.long)
            continue
        if leaf == 'running_var':
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == 'running_mean' or leaf == 'bias':
            value = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # BN weight
            value = rng.uniform(0.5, 1.0, shape)
        else:  # conv / linear weight; Shift-Max hyper-functions ('.fc.') keep a = init ± ~0.5
            gain = 0.5 if '.fc.' in key else 1.0
            value = rng.normal(0.0, gain / np.sqrt(np.prod(shape[1:])), shape)
        state[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return state


def make_input(seed: int = SEED, shape: tuple[int, ...] = (2, 3, 64, 64)) -> torch.Tensor:
    rng = np.random.default_rng(seed + 1)
    return torch.from_numpy(rng.normal(0.0, 1.0, shape).astype(np.float32))

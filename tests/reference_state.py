"""The official-code reference fixture: deterministic weights, inputs and what is recorded.

``tests/data/official_reference.json`` (keys, shapes, parameter counts, tensor metadata) and
``tests/data/official_reference.npz`` (calibrated BN statistics and the recorded outputs) were
written by ``tools/model_converters/make_official_fixture.py`` with the official code
(github liyunsheng13/micronet, run outside this repository; nothing of it is committed). The
tests rebuild the same weights and inputs from this module, so no official file or code is
needed at test time. numpy's PCG64 stream is stable across versions, so the weights are the
same everywhere.

How the weights are made, per variant:

1. Every tensor of the official state dict is drawn in key order (:func:`make_state`), the
   hyper-functions' Linear layers included (the official init leaves every Shift-Max coefficient
   at its constant, so the hyper-functions would never be exercised).
2. The BN statistics are calibrated: random batches go through the official model in train mode
   (cumulative averages), then each statistic is perturbed slightly (mean ± 0.1 std, variance
   x0.8-1.25) and each BN's variances are floored at their median. Purely random statistics make
   activations collapse or explode, and a parity check then cannot tell models apart. The
   calibrated statistics are stored in the ``.npz`` (float32) and replace those of step 1.

What is recorded, in float64, for the official ``features[i]`` outputs (stem, then every block),
the pooled features and the logits, on :func:`make_input` (2 x 3 x 224 x 224, a scale and a
shift per image): the shape, the largest magnitude, the standard deviation, the mean of every
channel, the values at ``SAMPLES`` positions drawn by :func:`sample_index`, and ``PROJECTIONS``
means of the tensor times random signs (:func:`signs`). Every statistic is a mean or a value, so
its error is bounded by the elementwise error: a comparison relative to the tensor's largest
magnitude is exact in its meaning.
"""
from __future__ import annotations

import json
import os.path as osp

import numpy as np
import torch

SEED = 2021
INPUT_SHAPE = (2, 3, 224, 224)
SAMPLES = 1024
PROJECTIONS = 4
DATA = osp.join(osp.dirname(osp.abspath(__file__)), 'data')
JSON_PATH = osp.join(DATA, 'official_reference.json')
NPZ_PATH = osp.join(DATA, 'official_reference.npz')


def make_state(keys_shapes: list[tuple[str, list[int]]], seed: int = SEED) -> dict:
    """Weights drawn in key order (BN statistics are replaced by calibrated ones after)."""
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


def make_input(seed: int = SEED, shape: tuple[int, ...] = INPUT_SHAPE) -> torch.Tensor:
    """Gaussian images, each with its own scale (0.5-2) and shift (± 0.5), float32."""
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(0.0, 1.0, shape)
    scale = rng.uniform(0.5, 2.0, (shape[0], 1, 1, 1))
    shift = rng.normal(0.0, 0.5, (shape[0], 1, 1, 1))
    return torch.from_numpy((x * scale + shift).astype(np.float32))


def calibration_batches(count: int = 8, batch: int = 8, seed: int = SEED) -> list[torch.Tensor]:
    """The inputs the generator calibrates BN on (same kind as :func:`make_input`)."""
    return [make_input(seed + 100 + i, (batch,) + INPUT_SHAPE[1:]) for i in range(count)]


def sample_index(numel: int, name: str) -> np.ndarray:
    """``SAMPLES`` flat positions of a tensor, drawn from its name (sorted, distinct)."""
    rng = np.random.default_rng([SEED, numel, *name.encode()])
    return np.sort(rng.choice(numel, size=min(SAMPLES, numel), replace=False))


def signs(numel: int, name: str) -> np.ndarray:
    """``PROJECTIONS`` rows of ±1, drawn from the tensor's name."""
    rng = np.random.default_rng([SEED + 1, numel, *name.encode()])
    return rng.integers(0, 2, (PROJECTIONS, numel), dtype=np.int8) * 2.0 - 1.0


def summarize(x: torch.Tensor, name: str) -> dict[str, np.ndarray]:
    """What the fixture records of one output (see the module doc), in float64."""
    a = x.detach().double().cpu().numpy()
    flat = a.reshape(-1)
    per_channel = a.reshape(a.shape[0], a.shape[1], -1).mean(axis=(0, 2)) if a.ndim > 1 else a
    return {'max_abs': np.array(np.abs(flat).max()), 'std': np.array(flat.std()),
            'channel_mean': per_channel,
            'samples': flat[sample_index(flat.size, name)],
            'projections': signs(flat.size, name) @ flat / flat.size}


def compare(x: torch.Tensor, ref: dict[str, np.ndarray], name: str, rtol: float) -> float:
    """The largest difference between ``x``'s statistics and the recorded ones, relative to the
    recorded largest magnitude; raises AssertionError naming ``name`` beyond ``rtol``."""
    got = summarize(x, name)
    scale = float(ref['max_abs'])
    worst = 0.0
    for key in ('channel_mean', 'samples', 'projections'):
        if got[key].shape != ref[key].shape:
            raise AssertionError(f'{name}: {key} shape {got[key].shape} != {ref[key].shape}')
        worst = max(worst, float(np.abs(got[key] - ref[key]).max()) / scale)
    if not worst <= rtol:
        raise AssertionError(f'{name}: differs from the official output by {worst:.3g} of its '
                             f'largest magnitude {scale:.3g} (tolerance {rtol:g})')
    return worst


def load_official() -> tuple[dict, dict[str, np.ndarray]]:
    """The fixture: (JSON record, arrays of the ``.npz``)."""
    with open(JSON_PATH) as f:
        record = json.load(f)
    with np.load(NPZ_PATH, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return record, arrays


def official_state(record: dict, arrays: dict[str, np.ndarray], arch: str) -> dict:
    """The official-layout state dict of ``arch``: drawn weights, calibrated BN statistics."""
    state = make_state([(k, s) for k, s in record[arch]['keys']])
    for key in state:
        stored = arrays.get(f'{arch}/bn/{key}')
        if stored is not None:
            state[key] = torch.from_numpy(stored.astype(np.float32))
    return state


def recorded(arrays: dict[str, np.ndarray], arch: str, name: str) -> dict[str, np.ndarray]:
    """The recorded statistics of output ``name`` (``features.3``, ``pool``, ``logits``)."""
    prefix = f'{arch}/out/{name}/'
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

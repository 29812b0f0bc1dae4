"""Write the official-code reference fixture that tests/test_official_reference.py reads.

Never run by the tests, and not needed to use the converter. It runs the official MicroNet code
(github liyunsheng13/micronet), which is not part of this repository, and needs ``yacs`` (the
official configuration library) next to torch and numpy::

    git --git-dir=<micronet.git> archive ed89b26 | tar -x -C /tmp/micronet-official
    python -m venv /tmp/fixture-venv && /tmp/fixture-venv/bin/pip install torch numpy yacs
    /tmp/fixture-venv/bin/python tools/model_converters/make_official_fixture.py \\
        /tmp/micronet-official --commit ed89b26ac1bbd5ac1fdf9e72c1ad1ac4cd8b4da8

Each variant is configured exactly as the official evaluation script
``scripts/eval_micronet_m{0..3}.sh`` configures it (its ``MODEL.*`` options are read from the
script and merged into the official defaults). What it writes under ``tests/data/`` and how the
weights and inputs are made is described in ``tests/reference_state.py``. The outputs are
computed in float64.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os.path as osp
import re
import sys

import numpy as np
import torch
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tests'))
ARCHS = ('m0', 'm1', 'm2', 'm3')


def official_config(repo: str, arch: str):
    """The official defaults merged with the ``MODEL.*`` options of the variant's eval script."""
    spec = importlib.util.spec_from_file_location('official_defaults',
                                                  osp.join(repo, 'utils', 'defaults.py'))
    defaults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(defaults)
    with open(osp.join(repo, 'scripts', f'eval_micronet_{arch}.sh')) as f:
        opts = re.findall(r'(MODEL\.[A-Z_.]+)\s+([^\s\\]+)', f.read())
    cfg = defaults._C.clone()
    cfg.merge_from_list([v for pair in opts for v in pair])
    return cfg


def official_model(repo: str, arch: str) -> nn.Module:
    if repo not in sys.path:
        sys.path.insert(0, repo)
    micronet = importlib.import_module('backbone.micronet')
    cfg = official_config(repo, arch)
    with contextlib.redirect_stdout(io.StringIO()):  # the official blocks print their settings
        return micronet.MicroNet(cfg, input_size=224, num_classes=1000)


def calibrate(model: nn.Module, arch: str) -> dict[str, np.ndarray]:
    """BN statistics from random batches in train mode, perturbed and floored (see
    reference_state.py); returns them by state-dict key, float32."""
    from reference_state import SEED, calibration_batches
    bns = {name: m for name, m in model.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for m in bns.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        for batch in calibration_batches():
            model(batch)
    rng = np.random.default_rng([SEED, ARCHS.index(arch)])
    stats = {}
    for name, m in bns.items():
        mean = m.running_mean.double().numpy()
        var = m.running_var.double().numpy()
        mean = mean + 0.1 * np.sqrt(var) * rng.normal(0.0, 1.0, mean.shape)
        var = var * rng.uniform(0.8, 1.25, var.shape)
        var = np.maximum(var, np.median(var))
        stats[f'{name}.running_mean'] = mean.astype(np.float32)
        stats[f'{name}.running_var'] = var.astype(np.float32)
    return stats


def record_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of every ``features[i]``, the pooled features and the logits (float64)."""
    outs = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=f'features.{i}': outs.__setitem__(name, out.clone()))
        for i, m in enumerate(model.features)]
    hooks.append(model.avgpool.register_forward_hook(
        lambda mod, inp, out: outs.__setitem__('pool', out.flatten(1).clone())))
    with torch.no_grad():
        outs['logits'] = model(x)
    for h in hooks:
        h.remove()
    return outs


def variant(repo: str, arch: str, arrays: dict) -> dict:
    from reference_state import make_input, make_state, summarize
    model = official_model(repo, arch)
    keys = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(make_state(keys))
    stats = calibrate(model, arch)
    state = make_state(keys)
    for key, value in stats.items():
        state[key] = torch.from_numpy(value)
        arrays[f'{arch}/bn/{key}'] = value
    model.load_state_dict(state)
    model.double().eval()
    outputs = record_outputs(model, make_input().double())
    meta = {}
    for name, out in outputs.items():
        summary = summarize(out, name)
        for stat, value in summary.items():
            arrays[f'{arch}/out/{name}/{stat}'] = value
        meta[name] = {'shape': list(out.shape), 'std': float(summary['std']),
                      'max_abs': float(summary['max_abs'])}
        print(f'{arch} {name:12s} {str(list(out.shape)):22s} std {summary["std"]:.3f} '
              f'max {summary["max_abs"]:.3f}')
    return {'params': sum(p.numel() for p in model.parameters()), 'keys': keys,
            'outputs': meta}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('official_repo', help='a checkout of github liyunsheng13/micronet')
    parser.add_argument('--commit', required=True, help='the official commit it is')
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'tests', 'data'))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    arrays: dict[str, np.ndarray] = {}
    record = {'official_commit': args.commit, 'torch_version': torch.__version__,
              'numpy_version': np.__version__}
    for arch in ARCHS:
        record[arch] = variant(args.official_repo, arch, arrays)
    with open(osp.join(args.out_dir, 'official_reference.json'), 'w') as f:
        json.dump(record, f)
    np.savez_compressed(osp.join(args.out_dir, 'official_reference.npz'), **arrays)


if __name__ == '__main__':
    main()

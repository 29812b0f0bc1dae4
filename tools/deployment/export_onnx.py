"""Export a MicroNet classifier to ONNX and check it against PyTorch with ONNX Runtime.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT [--out FILE] [--shape H W]
        [--deploy] [--opset N] [--atol A] [--cfg-options k=v ...]

The graph takes the normalised image batch ``(N, 3, H, W)`` (the data preprocessor's mean/std
are not part of it) and returns the logits ``(N, num_classes)``; N is a dynamic axis. With
``--deploy`` the model is first rewritten by ``micronet_mm.deploy.switch_to_deploy`` for ONNX
Runtime (BN folded, one kxk depthwise per factorized pair, composed shuffles, a short Dynamic
Shift-Max). The check runs the exported file in ONNX Runtime on random batches of 1 and 2,
prints the largest absolute difference from the PyTorch model as loaded (before any deploy
rewrite), and exits with status 1 when it is above ``--atol``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

import micronet_mm  # noqa: E402,F401  (safe checkpoint loading)
from micronet_mm.tools_common import MissingInputError, load_config  # noqa: E402

DEFAULT_ATOL = 1e-4


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export a MicroNet classifier to ONNX')
    parser.add_argument('config', help='mmpretrain config, e.g. configs/pretrain/'
                        'micronet-m0_8xb64_in1k.py')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--out', help='output file (default: CHECKPOINT with .onnx, plus '
                        '"-deploy" with --deploy)')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'),
                        help='input height and width (fixed in the graph; batch is dynamic)')
    parser.add_argument('--deploy', action='store_true',
                        help='export the deploy-mode model (micronet_mm.deploy)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    parser.add_argument('--atol', type=float, default=DEFAULT_ATOL,
                        help='largest allowed |ONNX Runtime - PyTorch| of the logits')
    parser.add_argument('--no-check', action='store_true', help='skip the ONNX Runtime check')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


class LogitsWrapper(torch.nn.Module):
    """``images -> logits`` of an mmpretrain classifier (its ``mode='tensor'`` forward)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')  # (N, num_classes)


def load_classifier(config: str, checkpoint: str | None, cfg_options: dict | None = None):
    """Build the config's model in eval mode and load ``checkpoint`` into it (CPU)."""
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise MissingInputError(f'checkpoint not found: {checkpoint}')
    cfg = load_config(config, cfg_options)
    import micronet_mm.models  # noqa: F401  (registers the MicroNet modules)
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope != 'mmpretrain':
        raise SystemExit(f'{config}: default_scope is {scope!r}; this tool exports mmpretrain '
                         'classifiers only')
    init_default_scope(scope)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.eval()


def export(model: torch.nn.Module, out: str, shape: tuple[int, int], opset: int = 17) -> None:
    """Write ``model`` (images -> logits) to ``out`` with a dynamic batch axis."""
    wrapper = LogitsWrapper(model).eval()
    dummy = torch.randn(1, 3, *shape)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(wrapper, (dummy,), out, input_names=['input'], output_names=['logits'],
                          dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}},
                          opset_version=opset, dynamo=False)


def check(model: torch.nn.Module, onnx_file: str, shape: tuple[int, int],
          batch_sizes=(1, 2), seed: int = 0) -> float:
    """Largest |ONNX Runtime - PyTorch| over random batches of the given sizes."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(onnx_file, opts, providers=['CPUExecutionProvider'])
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in batch_sizes:
        x = torch.randn(n, 3, *shape, generator=g)
        with torch.no_grad():
            ref = model(x, mode='tensor').numpy()
        got = sess.run(None, {'input': x.numpy()})[0]
        if got.shape != ref.shape:
            raise RuntimeError(f'ONNX output shape {got.shape} != PyTorch {ref.shape}')
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def main(argv=None) -> float:
    args = parse_args(argv)
    shape = tuple(args.shape)
    model = load_classifier(args.config, args.checkpoint, args.cfg_options)
    out = args.out or (osp.splitext(args.checkpoint)[0] + ('-deploy' if args.deploy else '')
                       + '.onnx')
    reference = model
    if args.deploy:
        import copy
        from micronet_mm.deploy import switch_to_deploy
        model = switch_to_deploy(copy.deepcopy(model), backend='onnxruntime')
    export(model, out, shape, args.opset)
    print(f'wrote {out} (input (batch, 3, {shape[0]}, {shape[1]}), '
          f'{"deploy" if args.deploy else "as trained"})')
    if args.no_check:
        return float('nan')
    diff = check(reference, out, shape)
    ok = diff <= args.atol
    print(f'ONNX Runtime vs PyTorch (batch 1 and 2): max abs diff {diff:.3g} '
          f'(threshold {args.atol:g}) -> {"OK" if ok else "FAILED"}')
    if not ok:
        raise SystemExit(1)
    return diff


if __name__ == '__main__':
    main()

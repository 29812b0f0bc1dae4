"""Export a MicroNet classifier, detector, pose model or segmentor to ONNX (or OpenVINO IR) and
check it against PyTorch with ONNX Runtime (or OpenVINO).

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT [--out FILE] [--force] [--shape H W]
        [--deploy] [--backend onnxruntime|openvino] [--opset N] [--atol A] [--rtol R]
        [--cfg-options k=v ...]

The task follows the config's ``default_scope``: ``mmpretrain`` (classifier: logits
``(N, num_classes)``, default input 224x224), ``mmpose`` (top-down pose model: heatmaps
``(N, K, H/4, W/4)``, default input the codec's, 256x192 for the COCO configs) or ``mmseg``
(segmentor: the decode head's logits ``(N, num_classes, H/8, W/8)`` before the resize to the
image, default input the data preprocessor's crop size, 512x1024 for Cityscapes) or ``mmdet``
(RetinaNet or Faster R-CNN, end to end: ``boxes`` ``(N, max_per_img, 4)`` in input pixels,
``scores`` ``(N, max_per_img)``, ``labels`` ``(N, max_per_img)``; anchors, box decoding,
score thresholds, Faster R-CNN's RPN and RoI feature extraction and every NMS inside the
graph (``micronet_mm.deploy.detection``), batch, height and width dynamic; for a
single-stage detector with ``--head-outputs`` instead ``scores_and_deltas``
``(N, anchors, classes + 4)``, every FPN level's class logits and box deltas in mmdet's anchor
order, before decoding and NMS; default input the test pipeline's ``Resize`` scale rounded up
to a multiple of 32, 800x1344 for the COCO configs). The graph takes the normalised image
batch ``(N, 3, H, W)`` (the data preprocessor's mean/std are not part of it); N is a dynamic
axis, and H and W too with ``--dynamic-shape`` (always for the end-to-end detector). With
``--deploy`` the model is first rewritten by ``micronet_mm.deploy.switch_to_deploy`` for ONNX
Runtime (BN folded, one kxk depthwise per factorized pair, composed shuffles, a short Dynamic
Shift-Max). The check runs the exported file in ONNX Runtime on random batches of 1 and 2,
prints the largest absolute difference from the PyTorch model as loaded (before any deploy
rewrite), and exits with status 1 when it is above the threshold ``max(atol, rtol · max|out|)``
(``max|out|`` the largest PyTorch output). Defaults: ``--atol 1e-4`` and ``--rtol 0`` for the
classifier (logits), ``--rtol 1e-4`` for pose heatmaps and segmentation logits, whose scale
varies with the model and whose float32 rounding grows with it. With ``--dynamic-shape`` the
check runs at a second size too (32 pixels wider). The end-to-end detector is checked against
mmdet's own ``predict`` (``rescale=False``) on batches of 2 at the input size and 32 pixels
wider: the same detections (count, labels), scores within ``--atol`` and boxes within
``--rtol`` (default 1e-3) of the largest box coordinate; it prints how many detections it
compared.

Next to the exported ``FILE`` it writes ``FILE.json`` (refused if it exists, unless ``--force``):
the task, input size, mean / std / channel order, padding, the test pipeline's resize, class
names, a pose model's codec and flip test, and the output names
(:func:`micronet_mm.apis.exported.build_metadata`), so that
``micronet_mm.apis.load_exported(FILE)`` runs the model on images without the config (not with
``--head-outputs``, whose outputs need mmdet's decoding).

``--backend openvino`` writes an OpenVINO IR (``FILE.xml`` + ``FILE.bin``) and checks it in
OpenVINO on the CPU in float32 (``INFERENCE_PRECISION_HINT=f32``), with the same thresholds. As
trained, the IR has standard operators only. With ``--deploy`` every Dynamic Shift-Max is ONE
native ``micronet::ShiftMax`` operation (``switch_to_deploy(model, 'openvino')``), and the extension
library that runs it is copied next to the IR (``libmicronet_openvino.so``; load it with
``openvino.Core().add_extension(path)`` before reading the IR). The default, ``onnxruntime``,
is the portable standard-operator ONNX file. The end-to-end detector as trained is an IR of
standard operators with dynamic batch, height and width; with ``--deploy`` the backbone's stem
and stages are native ``micronet::Program`` nodes, which need a static height and width: the IR
has ``--shape``'s and a dynamic batch, and runs at other sizes after ``Model.reshape``
(:func:`openvino_detector`, which the check uses at its two sizes).

``--backend ncnn`` and ``--backend mnn`` write the model in standard operators for the edge
runtimes (``micronet_mm.runtime.ncnn``: traced with TorchScript and converted by pnnx,
``FILE.param`` + ``FILE.bin``; ``micronet_mm.runtime.mnn``: the ONNX export with dynamic height
and width converted by MNN's converter, ``FILE.mnn``), and check it there, float32, with the
same thresholds, at the input size and 32 pixels wider (an ncnn model that pnnx converts at a
fixed size, the segmentor's, at its size only: ``micronet_mm.runtime.ncnn``). ncnn runs
MicroNet in its deploy form only (``--deploy``: ``switch_to_deploy(model, 'ncnn')``, 4-D
tensors and operators ncnn has); MNN runs both (with ``--deploy`` the same form,
``switch_to_deploy(model, 'mnn')``). The end-to-end detector runs in MNN (NMS included); ncnn
has no NonMaxSuppression and takes a detector with ``--head-outputs`` only.
"""
from __future__ import annotations

import argparse
import contextlib
import os.path as osp
import sys
from collections.abc import Callable

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

import micronet_mm  # noqa: E402,F401  (safe checkpoint loading)
from micronet_mm.apis.exported import (build_metadata, metadata_path,  # noqa: E402
                                       write_metadata)
from micronet_mm.checkpoint import load_weights  # noqa: E402
from micronet_mm.deploy.common import fixed_input_size  # noqa: E402
from micronet_mm.deploy import detection  # noqa: E402
from micronet_mm.deploy.detection import EndToEnd  # noqa: E402
from micronet_mm.errors import InvalidInputError, UserError, run_cli  # noqa: E402
from micronet_mm.fileio import atomic_write, refuse_overwrite  # noqa: E402
from micronet_mm.runtime.onnxruntime import open_session  # noqa: E402
from micronet_mm.tools_common import MissingInputError, build_model, load_config  # noqa: E402,E501

DEFAULT_ATOL = 1e-4
TASKS = {'mmpretrain': 'classifier', 'mmdet': 'detection', 'mmpose': 'pose',
         'mmseg': 'segmentation'}
OUTPUT_NAMES = {'classifier': 'logits', 'detection': 'scores_and_deltas', 'pose': 'heatmaps',
                'segmentation': 'logits'}
DEFAULT_RTOL = {'classifier': 0.0, 'detection': 1e-4, 'pose': 1e-4, 'segmentation': 1e-4}
DEFAULT_SEG_SHAPE = (512, 1024)
BACKENDS = {'onnxruntime': 'ONNX Runtime', 'openvino': 'OpenVINO', 'ncnn': 'ncnn', 'mnn': 'MNN'}
#: the edge runtimes: their files take any input size (module doc)
EDGE = ('ncnn', 'mnn')
#: the file each backend writes
EXTENSIONS = {'onnxruntime': '.onnx', 'openvino': '.xml', 'ncnn': '.param', 'mnn': '.mnn'}
END_TO_END_OUTPUTS = ('boxes', 'scores', 'labels')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a MicroNet classifier, detector, pose model or segmentor to ONNX')
    parser.add_argument('config', help='mmpretrain, mmdet, mmpose or mmseg config, e.g. '
                        'configs/det/retinanet_micronet_m3.py')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--out', help='output file (default: CHECKPOINT with .onnx, or .xml '
                        'for openvino, .param for ncnn, .mnn for mnn, plus "-deploy" with '
                        '--deploy); never the checkpoint itself')
    parser.add_argument('--force', action='store_true', help='replace an existing output')
    parser.add_argument('--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='input height and width (fixed in the graph; batch is dynamic); '
                        'default 224x224 (classifier), the test Resize scale (detection), the '
                        'codec input size (pose), the crop size or 512x1024 (segmentation)')
    parser.add_argument('--deploy', action='store_true',
                        help='export the deploy-mode model (micronet_mm.deploy; for openvino '
                        'with the native Shift-Max operation)')
    parser.add_argument('--backend', choices=list(BACKENDS), default='onnxruntime',
                        help='onnxruntime: standard-operator ONNX (default, portable); '
                        'openvino: OpenVINO IR .xml/.bin, checked in OpenVINO; ncnn: '
                        '.param/.bin (with --deploy), checked in ncnn; mnn: .mnn, checked in MNN')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    parser.add_argument('--atol', type=float, default=DEFAULT_ATOL,
                        help='largest allowed |ONNX Runtime - PyTorch| of the outputs')
    parser.add_argument('--rtol', type=float, default=None,
                        help='or this fraction of the largest |output|, if larger (default 0 '
                        'for classifiers, 1e-4 for the others)')
    parser.add_argument('--dynamic-shape', action='store_true',
                        help='make the input height and width dynamic axes (onnxruntime)')
    parser.add_argument('--head-outputs', action='store_true',
                        help='detector: export the head outputs (scores_and_deltas) instead of '
                        'the end-to-end model with decoding and NMS')
    parser.add_argument('--no-check', action='store_true', help='skip the runtime check')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def detector_outputs(cls_scores, bbox_preds) -> torch.Tensor:
    """A single-stage detector head's per-level outputs as one ``(N, anchors, classes + 4)``
    tensor: class logits and box deltas of every anchor, levels in turn, anchors in mmdet's
    order (height, width, anchor), as ``predict_by_feat`` flattens them."""
    out = []
    for cls, box in zip(cls_scores, bbox_preds):
        n, anchors = cls.shape[0], box.shape[1] // 4
        out.append(torch.cat([cls.permute(0, 2, 3, 1).reshape(n, -1, cls.shape[1] // anchors),
                              box.permute(0, 2, 3, 1).reshape(n, -1, 4)], dim=2))
    return torch.cat(out, dim=1)


class LogitsWrapper(torch.nn.Module):
    """``images -> output`` of a classifier, detector, pose model or segmentor: its
    ``mode='tensor'`` forward (logits, heatmaps, segmentation logits; a detector's per-level
    outputs as :func:`detector_outputs`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x, None, mode='tensor')  # (N, num_classes) or (N, K, h, w)
        return detector_outputs(*out) if isinstance(out, tuple) else out


def load_model(config: str, checkpoint: str | None, cfg_options: dict | None = None
               ) -> tuple[torch.nn.Module, str, tuple[int, int]]:
    """Build the config's model in eval mode and load ``checkpoint`` into it (CPU).

    Args:
        config: an mmpretrain, mmpose or mmseg config of this project.
        checkpoint: weights file, or None for the config's initial weights.
        cfg_options: overrides merged into the config.

    Returns:
        The model, its task (a value of ``TASKS``) and its default input ``(H, W)``.
    """
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise MissingInputError(f'checkpoint not found: {checkpoint}')
    cfg = load_config(config, cfg_options)
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope not in TASKS:
        raise InvalidInputError(f'{config}: default_scope is {scope!r}; this tool exports '
                         f'{", ".join(TASKS)} models ({", ".join(TASKS.values())})')
    task = TASKS[scope]
    model = build_model(cfg)
    if checkpoint is not None:  # strict: every weight from the file, shapes equal
        load_weights(model, checkpoint)
    if task == 'pose':
        w, h = (cfg.get('codec') or {}).get('input_size', (192, 256))
        shape = (h, w)
    elif task == 'segmentation':
        size = (cfg.model.get('data_preprocessor') or {}).get('size')
        shape = tuple(size) if size else DEFAULT_SEG_SHAPE
    elif task == 'detection':
        pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', [])
        w, h = next((t['scale'] for t in pipeline if t.get('type') == 'Resize'), (1333, 800))
        shape = (-(-h // 32) * 32, -(-w // 32) * 32)
    else:
        shape = (224, 224)
    return model.eval(), task, shape


def load_classifier(config: str, checkpoint: str | None, cfg_options: dict | None = None
                    ) -> torch.nn.Module:
    """:func:`load_model` for an mmpretrain classifier only (exits for other configs)."""
    model, task, _ = load_model(config, checkpoint, cfg_options)
    if task != 'classifier':
        raise InvalidInputError(f'{config}: a {task} config; expected an mmpretrain '
                                'classifier')
    return model


def export(model: torch.nn.Module, out: str, shape: tuple[int, int], opset: int = 17,
           output_name: str = 'logits', dynamic_batch: bool = True,
           custom_opsets: dict[str, int] | None = None, constant_caches: bool = False,
           merge_programs: bool = True, dynamic_hw: bool = False) -> None:
    """Write ``model`` (images -> its ``mode='tensor'`` output) to ``out``.

    Args:
        model: classifier, detector, pose model or segmentor, eval mode (left in eval mode).
        out: the ``.onnx`` file to write (atomically: a temp file, then renamed).
        shape: input ``(H, W)`` traced, fixed in the graph unless ``dynamic_hw``.
        opset: ONNX opset version.
        output_name: name of the graph output (``'logits'``, ``'heatmaps'``).
        dynamic_batch: make the batch a dynamic axis; else the graph takes batch 1.
        custom_opsets: versions of custom operator domains (``{'micronet': 1}`` for the
            OpenVINO deploy model).
        constant_caches: run the model once before tracing, so that what deploy modules
            cache per input size (the merged depthwise convolutions' bias maps) is a constant
            of the graph, not the subgraph computing it (OpenVINO 2026.4.1 computed that
            subgraph wrongly for some inputs of the pose head; the ONNX Runtime export keeps it).
        merge_programs: with the ``micronet`` domain, merge each chain of ``micronet.Program``
            nodes into one (:mod:`micronet_mm.deploy.rewrites.program_chain`: a classifier's
            three are one node, 4% faster in OpenVINO).
        dynamic_hw: make the input's height and width dynamic axes (and the output's spatial
            axes, or a detector's anchor axis): the graph runs at every input size (every
            deploy rewrite computes what depends on the size from the input). Without it the
            graph's input size is fixed and the merged depthwise bias maps are constants of it.
    """
    if isinstance(model, EndToEnd):  # boxes, scores, labels; any input size
        dynamic_hw, output_names = True, list(END_TO_END_OUTPUTS)
    else:
        output_names = [output_name]
    if dynamic_hw and constant_caches:
        raise ValueError('constant_caches fixes the input size; it excludes dynamic_hw')
    wrapper = model if isinstance(model, EndToEnd) else LogitsWrapper(model).eval()
    dummy = torch.randn(1, 3, *shape)
    axes = None
    if isinstance(model, EndToEnd):
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                **{name: {0: 'batch'} for name in output_names}}
    elif dynamic_batch or dynamic_hw:
        with torch.no_grad():
            rank = wrapper(dummy).dim()
        spatial = {2: {}, 3: {1: 'anchors'}, 4: {2: 'height_out', 3: 'width_out'}}[rank]
        axes = {'input': {**({0: 'batch'} if dynamic_batch else {}),
                          **({2: 'height', 3: 'width'} if dynamic_hw else {})},
                output_name: {**({0: 'batch'} if dynamic_batch else {}),
                              **(spatial if dynamic_hw else {})}}
    with torch.no_grad(), atomic_write(out) as tmp, contextlib.ExitStack() as stack:
        if not dynamic_hw:
            stack.enter_context(fixed_input_size())
        if constant_caches:
            wrapper(dummy)
        torch.onnx.export(wrapper, (dummy,), tmp, input_names=['input'],
                          output_names=output_names, dynamic_axes=axes,
                          opset_version=opset, custom_opsets=custom_opsets, dynamo=False)
        if merge_programs and 'micronet' in (custom_opsets or {}):
            import onnx

            from micronet_mm.deploy.rewrites.program_chain import merge_program_nodes
            graph = onnx.load(tmp)
            if merge_program_nodes(graph):
                onnx.save(graph, tmp)
    model.eval()  # the exporter restores the wrapper's mode


def ort_runner(onnx_file: str) -> Callable[[np.ndarray], np.ndarray]:
    """``images -> first output`` of ``onnx_file`` in ONNX Runtime (:func:`open_session`)."""
    sess = open_session(onnx_file)
    return lambda x: sess.run(None, {'input': x})[0]


def match_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                     want_boxes: np.ndarray, want_scores: np.ndarray, want_labels: np.ndarray,
                     score_tol: float = 1e-3) -> tuple[float, float] | None:
    """Pair one image's exported detections (``labels >= 0``) with the reference ones: each
    reference detection, best first, with the unused exported one of its label, score within
    ``score_tol``, and nearest box (the order of nearly equal scores may differ in float32).

    Returns:
        The largest |box difference| and |score difference| of the pairs, or None when the
        detections cannot be paired one to one.
    """
    valid = labels >= 0
    boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    if len(scores) != len(want_scores):
        return None
    used = np.zeros(len(scores), bool)
    box_err = score_err = 0.0
    for i in np.argsort(-want_scores, kind='stable'):
        ok = (~used & (labels == want_labels[i])
              & (np.abs(scores - want_scores[i]) <= score_tol))
        if not ok.any():
            return None
        diff = np.where(ok, np.abs(boxes - want_boxes[i]).max(1), np.inf)
        j = int(diff.argmin())
        used[j] = True
        box_err = max(box_err, float(diff[j]))
        score_err = max(score_err, float(abs(scores[j] - want_scores[i])))
    return box_err, score_err


def check_detections(detector: torch.nn.Module, run: Callable[[np.ndarray], list[np.ndarray]],
                           shapes: list[tuple[int, int]], batch: int = 2, seed: int = 0
                     ) -> tuple[float, float, int, str | None]:
    """The end-to-end detector in its runtime against mmdet's own ``predict`` (``rescale=False``)
    of ``detector`` on random batches of each input size.

    Args:
        detector: the mmdet detector as loaded (before any deploy rewrite), eval mode.
        run: ``images -> [boxes, scores, labels]`` of the exported file.
        shapes: input ``(H, W)`` sizes, one batch each.

    Returns:
        The largest |box difference| relative to the largest |box coordinate| of mmdet's
        detections, the largest |score difference| (detections paired by
        :func:`match_detections`), the number of detections compared, and a line describing
        the first image whose detections do not pair (None if none).
    """
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    box_err = score_err = 0.0
    count = 0
    for h, w in shapes:
        x = torch.randn(batch, 3, h, w, generator=g)
        meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
        with torch.no_grad():
            ref = detector.predict(x, [DetDataSample(metainfo=meta) for _ in range(batch)],
                                   rescale=False)
        boxes, scores, labels = run(x.numpy())
        for i, sample in enumerate(ref):
            want = sample.pred_instances
            errs = match_detections(boxes[i], scores[i], labels[i], want.bboxes.numpy(),
                                    want.scores.numpy(), want.labels.numpy())
            if errs is None:
                return box_err, score_err, count, (
                    f'input {h}x{w}, image {i}: {int((labels[i] >= 0).sum())} detections, '
                    f'PyTorch {len(want.scores)}, not the same labels and scores')
            count += len(want.scores)
            if len(want.scores):
                box_err = max(box_err, errs[0] / max(float(want.bboxes.abs().max()), 1.0))
                score_err = max(score_err, errs[1])
    return box_err, score_err, count, None


def check(model: torch.nn.Module, run: Callable[[np.ndarray], np.ndarray],
          shape: tuple[int, int], batch_sizes=(1, 2), seed: int = 0) -> tuple[float, float]:
    """Largest |runtime - PyTorch| over random batches of the given sizes, and the largest
    |PyTorch output|.

    Args:
        model: the PyTorch model, eval mode.
        run: the exported model in its runtime, ``images (N, 3, H, W) -> output``.
        shape: input ``(H, W)``.
        batch_sizes: one random batch of each size.
        seed: of the random batches.
    """
    g = torch.Generator().manual_seed(seed)
    worst = scale = 0.0
    for n in batch_sizes:
        x = torch.randn(n, 3, *shape, generator=g)
        with torch.no_grad():
            ref = LogitsWrapper(model)(x).numpy()
        got = run(x.numpy())
        if got.shape != ref.shape:
            raise RuntimeError(f'exported output shape {got.shape} != PyTorch {ref.shape}')
        worst = max(worst, float(np.abs(got - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
    return worst, scale


def output_path(checkpoint: str, out: str | None, *, deploy: bool, force: bool,
                ext: str = '.onnx') -> str:
    """The file to write: ``out``, or ``CHECKPOINT`` with ``ext`` (``-deploy`` + ``ext``).

    Raises:
        UserError: the output would be the checkpoint itself (whatever ``force``), or it
            exists and ``force`` is false.
    """
    out = out or osp.splitext(checkpoint)[0] + ('-deploy' if deploy else '') + ext
    if osp.exists(checkpoint) and osp.exists(out) and osp.samefile(out, checkpoint):
        raise UserError(f'the output {out} is the checkpoint itself; not overwriting it. '
                        'Give another file with --out.')
    refuse_overwrite(out, force)
    return out


def export_for(model: torch.nn.Module, out: str, shape: tuple[int, int], *, backend: str,
               opset: int = 17, output_name: str = 'logits', force: bool = False,
               dynamic_hw: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Write ``model`` for ``backend`` to ``out`` (ONNX, or OpenVINO IR ``.xml``/``.bin`` plus
    the extension library when the model has native Shift-Max nodes) and open it there.

    Args:
        force: replace an existing ``.bin`` / extension library next to an IR.

        dynamic_hw: dynamic input height and width (onnxruntime).

    Returns:
        ``images -> output`` of the written file in that runtime (the end-to-end detector:
        ``images -> [boxes, scores, labels]``).
    """
    if backend == 'onnxruntime':
        export(model, out, shape, opset, output_name, dynamic_hw=dynamic_hw)
        if isinstance(model, EndToEnd):
            sess = open_session(out)
            return lambda x: sess.run(None, {'input': x})
        return ort_runner(out)
    import tempfile
    if backend == 'ncnn':  # traced with TorchScript by pnnx at two sizes: any input size
        from micronet_mm.runtime import ncnn
        ncnn.convert(LogitsWrapper(model).eval(), out, shape=(1, 3, *shape),
                     output_names=[output_name], force=force)
        runner = ncnn.load(out)
        return lambda x: runner(x)[0]
    if backend == 'mnn':  # the standard-operator ONNX file with dynamic sizes, converted
        from micronet_mm.runtime import mnn
        with tempfile.TemporaryDirectory() as tmp:
            onnx_file = osp.join(tmp, 'model.onnx')
            export(model, onnx_file, shape, opset, output_name, dynamic_hw=True)
            mnn.convert(onnx_file, out, force=force)
        runner = mnn.load(out)
        if isinstance(model, EndToEnd):  # boxes, scores, labels
            return runner
        return lambda x: runner(x)[0]
    from micronet_mm.runtime import openvino as ovrt
    end_to_end_model = isinstance(model, EndToEnd)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = osp.join(tmp, 'model.onnx')
        # the end-to-end detector keeps a dynamic input size (its backbone has no size-specific
        # constant: the stages are programs, or the bias maps are computed from the input)
        export(model, onnx_file, shape, opset, output_name, custom_opsets={'micronet': 1},
               constant_caches=not end_to_end_model)
        if end_to_end_model:
            fix_native_input_size(onnx_file, shape)
        ovrt.save_ir(onnx_file, out, force=force)
    if end_to_end_model:
        return openvino_detector(out)
    compiled = ovrt.compile_model(out)
    return lambda x: compiled(x)[0]


def fix_native_input_size(onnx_file: str, shape: tuple[int, int]) -> None:
    """Where the graph has native ``micronet`` nodes (whose OpenVINO operation needs a static
    input height and width), give its input the height and width ``shape`` (the batch stays
    dynamic); the IR is reshaped to other sizes when it is read (:func:`openvino_detector`)."""
    import onnx
    graph = onnx.load(onnx_file)
    if not any(n.domain == 'micronet' for n in graph.graph.node):
        return
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    for d, size in zip(dims[2:], shape):
        d.ClearField('dim_param')
        d.dim_value = size
    onnx.save(graph, onnx_file)


def openvino_detector(path: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``images -> [boxes, scores, labels]`` of an end-to-end detector's IR in OpenVINO (CPU,
    float32), at any input size: an IR whose height and width are fixed (the ``--deploy``
    form's native nodes need them static) is reshaped to each new size (``Model.reshape``)
    and compiled once per size."""
    import openvino as ov

    from micronet_mm.runtime import openvino as ovrt
    compiled = {}

    def run(x: np.ndarray) -> list[np.ndarray]:
        size = tuple(x.shape[2:])
        if size not in compiled:
            model = ovrt.read_model(path)
            if model.inputs[0].get_partial_shape()[2].is_static:
                model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, *size])})
            compiled[size] = ovrt.compile_model(model)
        r = compiled[size](x)
        return [r[0], r[1], r[2]]
    return run


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    if args.backend == 'ncnn' and not args.deploy:
        raise InvalidInputError('--backend ncnn needs --deploy: ncnn runs MicroNet in its '
                                'deploy form (4-D standard operators) only')
    out = output_path(args.checkpoint, args.out, deploy=args.deploy, force=args.force,
                      ext=EXTENSIONS[args.backend])
    refuse_overwrite(metadata_path(out), args.force)
    model, task, default_shape = load_model(args.config, args.checkpoint, args.cfg_options)
    end_to_end = task == 'detection' and not args.head_outputs
    if args.backend == 'ncnn' and end_to_end:
        raise InvalidInputError('--backend ncnn exports no detector post-processing (ncnn has '
                                'no NonMaxSuppression): add --head-outputs')
    if args.backend != 'onnxruntime' and args.dynamic_shape:
        raise InvalidInputError(f'--backend {args.backend} exports a fixed input size (an '
                                'end-to-end detector excepted): drop --dynamic-shape')
    if task == 'detection' and args.head_outputs and hasattr(model, 'roi_head'):
        raise InvalidInputError(f'{args.config}: a two-stage detector has no --head-outputs '
                                'form (its RoI head needs the proposals); drop --head-outputs '
                                'to export it end to end')
    shape = tuple(args.shape) if args.shape else default_shape
    reference = model
    if args.deploy:
        import copy
        from micronet_mm.deploy import switch_to_deploy
        model = switch_to_deploy(copy.deepcopy(model), backend=args.backend)
    if end_to_end:
        try:
            model = detection.end_to_end(model)
        except ValueError as e:
            hint = '' if hasattr(model, 'roi_head') else '; export the head outputs with ' \
                '--head-outputs'
            raise InvalidInputError(f'{args.config}: {e}{hint}') from None
    dynamic = end_to_end or args.dynamic_shape or args.backend in EDGE
    run = export_for(model, out, shape, backend=args.backend, opset=args.opset,
                     output_name=OUTPUT_NAMES[task], force=args.force, dynamic_hw=dynamic)
    if args.backend == 'ncnn':  # a model holding its input size runs at that size only
        from micronet_mm.runtime.ncnn import input_shape
        with open(out) as f:
            dynamic = input_shape(f.read()) is None
    outputs = ', '.join(END_TO_END_OUTPUTS) if end_to_end else OUTPUT_NAMES[task]
    if not args.head_outputs:  # what micronet_mm.apis.load_exported needs besides the file
        write_metadata(out, build_metadata(
            load_config(args.config, args.cfg_options), reference, task, shape,
            END_TO_END_OUTPUTS if end_to_end else [OUTPUT_NAMES[task]], dynamic, args.config))
    print(f'wrote {out} ({task}, input (batch, 3, {"height, width" if dynamic else shape[0]}'
          f'{"" if dynamic else f", {shape[1]}"}), output {outputs}, '
          f'{"deploy" if args.deploy else "as trained"}, {args.backend})')
    if args.no_check:
        return float('nan')
    shapes = [shape, (shape[0], shape[1] + 32)] if dynamic else [shape]
    sizes = ' and '.join(f'{h}x{w}' for h, w in shapes)
    if end_to_end:
        rtol = 1e-3 if args.rtol is None else args.rtol
        box_err, score_err, count, mismatch = check_detections(reference, run, shapes)
        ok = mismatch is None and box_err <= rtol and score_err <= args.atol
        print(f'{BACKENDS[args.backend]} vs mmdet predict (batch 2, {sizes}): '
              + (mismatch or f'same detections ({count}), boxes within {box_err:.3g} of the '
                 f'largest coordinate (rtol {rtol:g}), scores within {score_err:.3g} (atol '
                 f'{args.atol:g})') + f' -> {"OK" if ok else "FAILED"}')
        if not ok:
            raise SystemExit(1)
        return box_err
    diff, scale = 0.0, 0.0
    for hw in shapes:
        d, s = check(reference, run, hw)
        diff, scale = max(diff, d), max(scale, s)
    rtol = DEFAULT_RTOL[task] if args.rtol is None else args.rtol
    threshold = max(args.atol, rtol * scale)
    ok = diff <= threshold
    print(f'{BACKENDS[args.backend]} vs PyTorch (batch 1 and 2, {sizes}): max abs diff {diff:.3g} '
          f'(threshold {threshold:g} = max(atol {args.atol:g}, rtol {rtol:g} x max|output| '
          f'{scale:.3g})) -> {"OK" if ok else "FAILED"}')
    if not ok:
        raise SystemExit(1)
    return diff


if __name__ == '__main__':
    run_cli(main)

"""Detectors end to end: images in, boxes, scores and labels out, with anchor generation, box
decoding, score thresholds, RoI feature extraction and NMS written in operators that export to
standard ONNX (``TopK``, ``Gather``, ``NonZero``, ``RoiAlign``, ``NonMaxSuppression``,
``ScatterND``...), for every batch size and input size. The post-processing is mmdet's
``predict`` with ``rescale=False``:

* :class:`EndToEndDetector`, a single-stage detector (RetinaNet): ``BaseDenseHead.
  predict_by_feat``: per FPN level the ``nms_pre`` highest (anchor, class) scores above
  ``score_thr``, decoded with the head's ``DeltaXYWHBBoxCoder`` (means, stds, ratio clip,
  clipped to the input), boxes no wider or higher than ``min_bbox_size`` dropped, class-wise
  NMS, the ``max_per_img`` best kept;
* :class:`EndToEndTwoStageDetector`, Faster R-CNN: the RPN as above with one class and NMS
  per level (``test_cfg.rpn``), then mmdet's ``SingleRoIExtractor`` (each proposal's FPN level
  from its scale, ``RoIAlign``), the box head, per-class decoding, ``multiclass_nms``
  (``test_cfg.rcnn``).

Every NMS is mmcv's ``batched_nms``: the boxes of each group (class, or RPN level) shifted by
``group · (largest coordinate + 1)``, then one class-agnostic NMS, so that the IoUs are
computed from the same float32 coordinates as mmdet's. See docs/deploy.md."""
from __future__ import annotations

import math

import torch
from torch import nn


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression``: ``boxes (N, K, 4)`` (corners), ``scores (N, C, K)`` ->
    ``(M, 3)`` selected ``(batch, class, box)`` indices, at most ``max_per_class`` per batch
    item and class, each class's in decreasing score. Eagerly the same with torchvision's
    ``nms`` (greedy, IoU above ``iou_thr`` suppresses, scores above ``score_thr`` only)."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int,
                iou_thr: float, score_thr: float) -> torch.Tensor:
        from torchvision.ops import nms
        out = []
        for n in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                idx = (scores[n, c] > score_thr).nonzero()[:, 0]
                keep = idx[nms(boxes[n, idx], scores[n, c, idx], iou_thr)][:max_per_class]
                out.append(torch.stack([torch.full_like(keep, n), torch.full_like(keep, c),
                                        keep], 1))
        return torch.cat(out) if out else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_thr, score_thr):
        return g.op('NonMaxSuppression', boxes, scores,
                    g.op('Constant', value_t=torch.tensor([max_per_class], dtype=torch.long)),
                    g.op('Constant', value_t=torch.tensor([iou_thr], dtype=torch.float)),
                    g.op('Constant', value_t=torch.tensor([score_thr], dtype=torch.float)))


class _RoIAlign(torch.autograd.Function):
    """ONNX ``RoiAlign`` (average mode): ``feat (N, C, H, W)``, ``rois (R, 4)`` (corners, input
    pixels), ``batch (R,)`` -> ``(R, C, out_h, out_w)``. ``aligned`` is mmcv's ``RoIAlign``
    ``aligned=True``: ONNX's ``half_pixel`` mode (pixel centres at +0.5, no minimum RoI
    size); ``sampling_ratio`` 0 takes ``ceil(roi size / output size)`` samples per bin, as
    mmcv and ONNX do. Eagerly torchvision's ``roi_align``, the same algorithm."""

    @staticmethod
    def forward(ctx, feat: torch.Tensor, rois: torch.Tensor, batch: torch.Tensor,
                size: tuple[int, int], spatial_scale: float, sampling_ratio: int,
                aligned: bool) -> torch.Tensor:
        from torchvision.ops import roi_align
        boxes = torch.cat([batch[:, None].to(rois.dtype), rois], 1)
        return roi_align(feat, boxes, size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def symbolic(g, feat, rois, batch, size, spatial_scale, sampling_ratio, aligned):
        return g.op('RoiAlign', feat, rois, batch, mode_s='avg',
                    coordinate_transformation_mode_s=(
                        'half_pixel' if aligned else 'output_half_pixel'),
                    output_height_i=size[0], output_width_i=size[1],
                    sampling_ratio_i=sampling_ratio, spatial_scale_f=spatial_scale)


#: the score threshold that keeps every candidate: scores are probabilities, and -1 marks the
#: slots without one (padding, dropped boxes, suppressed)
NO_THRESHOLD = -0.5


def _axis(t: torch.Tensor) -> torch.Tensor:
    """``0, 1, ..., len(t) - 1`` as float, from a 1-D tensor's length (``ConstantOfShape``
    and ``CumSum`` in a trace: the length stays dynamic)."""
    return torch.ones_like(t).cumsum(0) - 1


def _image_size(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Width and height of the image batch ``x (N, 3, H, W)`` as 0-d float tensors, read from
    the input (``ReduceSum`` of a row of ones in a trace)."""
    return torch.ones_like(x[0, 0, 0, :]).sum(), torch.ones_like(x[0, 0, :, 0]).sum()


def _rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t (N, K, D)`` at ``idx (N, k)`` -> ``(N, k, D)`` (one ``GatherElements``)."""
    return torch.gather(t, 1, idx[..., None].expand(-1, -1, t.shape[-1]))


def _top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest of ``scores (N, M)`` and their indices, whatever ``M``: the scores
    are padded with ``k`` entries of -1 (below every threshold), so that ``TopK`` has a
    constant k at every input size; a padded entry's index is ``M`` or more."""
    padded = torch.cat([scores, torch.full_like(scores[:, :1], -1.0).repeat(1, k)], 1)
    return padded.topk(k, 1)


class AnchorGrid(nn.Module):
    """mmdet's ``AnchorGenerator.grid_priors`` for one feature map at a time.

    Args:
        prior_generator: the head's anchor generator (strides and base anchors are copied).
    """

    def __init__(self, prior_generator) -> None:
        super().__init__()
        if type(prior_generator).__name__ != 'AnchorGenerator':
            raise ValueError(f'end-to-end export places AnchorGenerator anchors, not '
                             f'{type(prior_generator).__name__}')
        self.strides = [tuple(float(v) for v in s) for s in prior_generator.strides]  # (w, h)
        for i, base in enumerate(prior_generator.base_anchors):
            self.register_buffer(f'base_anchors_{i}', base.detach().clone().float())

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def forward(self, level: int, feat: torch.Tensor) -> torch.Tensor:
        """The level's anchors ``(H·W·A, 4)`` for the feature map ``feat (N, C, H, W)``, in
        mmdet's order (row, column, anchor)."""
        base = getattr(self, f'base_anchors_{level}')  # (A, 4)
        sw, sh = self.strides[level]
        xs = _axis(feat[0, 0, 0, :]) * sw  # (W,)
        ys = _axis(feat[0, 0, :, 0]) * sh  # (H,)
        xx = xs[None, :] + ys[:, None] * 0  # (H, W)
        yy = ys[:, None] + xs[None, :] * 0
        shifts = torch.stack([xx, yy, xx, yy], -1).reshape(-1, 1, 4)
        return (shifts + base[None]).reshape(-1, 4)


class DeltaDecoder(nn.Module):
    """mmdet's ``DeltaXYWHBBoxCoder.decode`` (``delta2bbox``) with the coder's means, stds,
    default ratio clip and border clipping.

    Args:
        coder: a ``DeltaXYWHBBoxCoder`` (its settings are copied).
    """

    def __init__(self, coder) -> None:
        super().__init__()
        if type(coder).__name__ != 'DeltaXYWHBBoxCoder' or coder.add_ctr_clamp:
            raise ValueError(f'end-to-end export decodes DeltaXYWHBBoxCoder boxes, not '
                             f'{type(coder).__name__}')
        self.clip_border = bool(coder.clip_border)
        # the heads call decode() with its default ratio clip
        self.max_ratio = abs(math.log(getattr(coder, 'wh_ratio_clip', 16 / 1000)))
        self.register_buffer('means', torch.tensor(coder.means, dtype=torch.float32))
        self.register_buffer('stds', torch.tensor(coder.stds, dtype=torch.float32))

    def forward(self, anchors: torch.Tensor, deltas: torch.Tensor, width: torch.Tensor,
                height: torch.Tensor) -> torch.Tensor:
        """``anchors``, ``deltas`` ``(..., 4)`` (broadcast) -> boxes ``(..., 4)`` clipped to
        ``[0, width] x [0, height]`` (0-d tensors)."""
        d = deltas * self.stds + self.means
        pxy = (anchors[..., :2] + anchors[..., 2:]) * 0.5
        pwh = anchors[..., 2:] - anchors[..., :2]
        gxy = pxy + pwh * d[..., :2]
        gwh = pwh * d[..., 2:].clamp(-self.max_ratio, self.max_ratio).exp()
        x1y1, x2y2 = gxy - gwh * 0.5, gxy + gwh * 0.5
        if not self.clip_border:
            return torch.cat([x1y1, x2y2], -1)
        hi = torch.stack([width, height])
        return torch.cat([torch.minimum(x1y1.clamp(min=0), hi),
                          torch.minimum(x2y2.clamp(min=0), hi)], -1)


def _nms_cfg(cfg: dict, what: str) -> tuple[float, int]:
    """``(iou_threshold, max_per_img)`` of a test_cfg whose NMS is ``dict(type='nms')``."""
    nms = cfg.get('nms') or {}
    if nms.get('type', 'nms') != 'nms' or 'iou_threshold' not in nms:
        raise ValueError(f"end-to-end export needs {what} nms=dict(type='nms', "
                         'iou_threshold=...)')
    return float(nms['iou_threshold']), int(cfg['max_per_img'])


class AnchorHeadCandidates(nn.Module):
    """mmdet's ``predict_by_feat`` of an anchor head with a sigmoid classifier up to the NMS,
    for a batch: per level the ``nms_pre`` best (anchor, class) scores above ``score_thr``,
    decoded, and boxes no wider or higher than ``min_bbox_size`` dropped.

    Args:
        head: RetinaNet's head or the RPN (an ``AnchorHead`` with ``use_sigmoid_cls``).
        cfg: its test_cfg: ``nms_pre`` (> 0), ``score_thr`` (default: none, the RPN's),
            ``min_bbox_size`` (default -1: none).
    """

    def __init__(self, head: nn.Module, cfg: dict) -> None:
        super().__init__()
        if not getattr(head, 'use_sigmoid_cls', False):
            raise ValueError('end-to-end export needs a sigmoid classifier (RetinaNet, RPN)')
        if cfg.get('nms_pre', -1) <= 0:
            raise ValueError('end-to-end export needs test_cfg nms_pre > 0')
        self.anchors = AnchorGrid(head.prior_generator)
        self.decode = DeltaDecoder(head.bbox_coder)
        self.num_classes = head.cls_out_channels
        self.nms_pre = int(cfg['nms_pre'])
        self.score_thr = float(cfg.get('score_thr', NO_THRESHOLD))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))

    @property
    def num_candidates(self) -> int:
        return self.anchors.num_levels * self.nms_pre

    def forward(self, cls_scores, bbox_preds, width: torch.Tensor, height: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The head's per-level outputs -> ``boxes (N, K, 4)``, ``scores (N, K)`` (-1: no
        candidate), ``labels (N, K)`` (class) and ``levels (N, K)``, ``K = levels · nms_pre``.
        """
        c, k = self.num_classes, self.nms_pre
        pad_anchors = k // c + 1  # rows that the padded scores' indices may point at
        boxes, scores, labels, levels = [], [], [], []
        for level, (cls, box) in enumerate(zip(cls_scores, bbox_preds)):
            n = cls.shape[0]
            s = cls.permute(0, 2, 3, 1).reshape(n, -1).sigmoid()  # (N, H·W·A·C)
            s = torch.where(s > self.score_thr, s, torch.full_like(s, -1.0))
            top, idx = _top_k(s, k)  # (N, k): mmdet's nms_pre best above the threshold
            anchor_idx = torch.div(idx, c, rounding_mode='floor')
            d = box.permute(0, 2, 3, 1).reshape(n, -1, 4)  # (N, H·W·A, 4)
            d = torch.cat([d, torch.zeros_like(d[:, :1]).repeat(1, pad_anchors, 1)], 1)
            a = self.anchors(level, cls)
            a = torch.cat([a, torch.zeros_like(a[:1]).repeat(pad_anchors, 1)], 0)
            boxes.append(self.decode(a[anchor_idx], _rows(d, anchor_idx), width, height))
            scores.append(top)
            labels.append(idx - anchor_idx * c)
            levels.append(torch.full_like(idx, level))
        boxes, scores = torch.cat(boxes, 1), torch.cat(scores, 1)
        if self.min_bbox_size >= 0:
            wh = boxes[..., 2:] - boxes[..., :2]
            big = (wh[..., 0] > self.min_bbox_size) & (wh[..., 1] > self.min_bbox_size)
            scores = torch.where(big, scores, torch.full_like(scores, -1.0))
        return boxes, scores, torch.cat(labels, 1), torch.cat(levels, 1)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                iou_thr: float, score_thr: float, max_out: int) -> torch.Tensor:
    """mmcv's ``batched_nms`` for a batch: ``boxes (N, K, 4)``, ``scores (N, K)``, ``groups
    (N, K)`` (int: the class, or the RPN level) -> the scores that NMS keeps, -1 elsewhere.

    Candidates are the scores above ``score_thr``; each group's boxes are shifted by
    ``group · (largest coordinate of the image's candidates + 1)`` so that no two groups
    overlap, then ONE class-agnostic ``NonMaxSuppression`` keeps at most ``max_out`` per
    image: the shifted coordinates, and so the IoUs, are those mmcv computes."""
    valid = scores > score_thr
    lowest = torch.finfo(boxes.dtype).min
    top = torch.where(valid, boxes.amax(-1), torch.full_like(scores, lowest)).amax(1)  # (N,)
    top = torch.where(top > lowest, top, torch.zeros_like(top))
    shifted = boxes + (groups.to(boxes.dtype) * (top[:, None] + 1))[..., None]
    sel = _NonMaxSuppression.apply(shifted, scores[:, None, :], max_out, iou_thr, score_thr)
    b, i = sel[:, 0], sel[:, 2]
    return torch.full_like(scores, -1.0).index_put((b, i), scores[b, i])


def _best(boxes: torch.Tensor, kept: torch.Tensor, labels: torch.Tensor, k: int,
          score_thr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best of the kept scores ``(N, K)`` (:func:`batched_nms`) as ``boxes (N, k, 4)``,
    ``scores (N, k)``, ``labels (N, k)``, best first; slots past the detections get score 0,
    label -1 and a zero box."""
    top, idx = kept.topk(k, 1)
    box = _rows(boxes, idx)
    label = torch.gather(labels, 1, idx)
    valid = top > score_thr
    return (box * valid[..., None], torch.where(valid, top, torch.zeros_like(top)),
            torch.where(valid, label, torch.full_like(label, -1)))


class EndToEnd(nn.Module):
    """A detector end to end: ``images (N, 3, H, W)`` (normalised, as the data preprocessor
    gives them) -> ``boxes (N, max_per_img, 4)`` (x1, y1, x2, y2 in input pixels), ``scores
    (N, max_per_img)``, ``labels (N, max_per_img)`` (int64), detections first in decreasing
    score; the remaining slots have score 0, label -1 and a zero box. Eval mode only."""

    detector: nn.Module


class EndToEndDetector(EndToEnd):
    """A single-stage detector (RetinaNet) end to end (:class:`EndToEnd`).

    Args:
        detector: an mmdet single-stage detector whose head has a sigmoid classifier, an anchor
            generator and a ``DeltaXYWHBBoxCoder`` (RetinaNet), eval mode.
        test_cfg: ``nms_pre``, ``score_thr``, ``nms.iou_threshold``, ``max_per_img`` and
            ``min_bbox_size`` (default: the head's ``test_cfg``).
    """

    def __init__(self, detector: nn.Module, test_cfg: dict | None = None) -> None:
        super().__init__()
        head = detector.bbox_head
        cfg = dict(test_cfg if test_cfg is not None else head.test_cfg)
        self.detector = detector
        self.candidates = AnchorHeadCandidates(head, cfg)
        self.iou_thr, self.max_per_img = _nms_cfg(cfg, 'test_cfg')
        self.score_thr = self.candidates.score_thr
        if self.candidates.num_candidates < self.max_per_img:
            raise ValueError('max_per_img is above the candidates nms_pre gives')

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_scores, bbox_preds = self.detector(x, None, mode='tensor')
        boxes, scores, labels, _ = self.candidates(cls_scores, bbox_preds, *_image_size(x))
        kept = batched_nms(boxes, scores, labels, self.iou_thr, self.score_thr,
                           self.max_per_img)
        return _best(boxes, kept, labels, self.max_per_img, self.score_thr)


class EndToEndTwoStageDetector(EndToEnd):
    """Faster R-CNN end to end (:class:`EndToEnd`): mmdet's ``TwoStageDetector.predict``.

    * RPN (``test_cfg.rpn``): per level the ``nms_pre`` best anchors, decoded, boxes no wider
      or higher than ``min_bbox_size`` dropped, NMS per level, the ``max_per_img`` best
      proposals of all levels;
    * RoI features (the ``SingleRoIExtractor``): each proposal's level
      ``floor(log2(sqrt(w·h) / finest_scale + 1e-6))`` clamped to the levels, written as
      comparisons with powers of two; per level the proposals there (``NonZero``) and one
      ``RoiAlign`` (mmcv's ``aligned=True``, its ``sampling_ratio``);
    * the box head on those RoIs, softmax scores, per-class ``delta2bbox`` from the proposal,
      clipped to the input; ``multiclass_nms`` (``test_cfg.rcnn``: scores above ``score_thr``,
      NMS per class, the ``max_per_img`` best).

    Args:
        detector: an mmdet ``TwoStageDetector`` with an ``RPNHead`` (sigmoid) and a
            ``StandardRoIHead`` (``SingleRoIExtractor`` with ``RoIAlign``, a box head with a
            softmax classifier and ``DeltaXYWHBBoxCoder``), eval mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        roi_head = getattr(detector, 'roi_head', None)
        rpn_cfg, rcnn_cfg = dict(detector.rpn_head.test_cfg), dict(roi_head.test_cfg)
        extractor, head = roi_head.bbox_roi_extractor, roi_head.bbox_head
        if (type(roi_head).__name__ != 'StandardRoIHead' or roi_head.with_shared_head
                or type(extractor).__name__ != 'SingleRoIExtractor'):
            raise ValueError('end-to-end export needs a StandardRoIHead with a '
                             'SingleRoIExtractor and no shared head (Faster R-CNN)')
        layers = list(extractor.roi_layers)
        if any(type(m).__name__ != 'RoIAlign' or m.pool_mode != 'avg' for m in layers):
            raise ValueError("end-to-end export needs RoIAlign roi layers (pool_mode='avg')")
        if (getattr(head, 'custom_cls_channels', False)
                or getattr(head.loss_cls, 'use_sigmoid', False)):
            raise ValueError('end-to-end export needs a softmax box classifier')
        self.detector = detector
        self.rpn = AnchorHeadCandidates(detector.rpn_head, rpn_cfg)
        self.rpn_iou, rpn_max = _nms_cfg(rpn_cfg, 'test_cfg.rpn')
        self.num_proposals = min(rpn_max, self.rpn.num_candidates)
        self.finest_scale = float(extractor.finest_scale)
        self.roi_args = [(tuple(m.output_size), float(m.spatial_scale), int(m.sampling_ratio),
                          bool(m.aligned)) for m in layers]
        self.decode = DeltaDecoder(head.bbox_coder)
        self.num_classes = head.num_classes
        self.class_agnostic = bool(head.reg_class_agnostic)
        self.iou_thr, self.max_per_img = _nms_cfg(rcnn_cfg, 'test_cfg.rcnn')
        self.score_thr = float(rcnn_cfg.get('score_thr', 0.0))
        if self.num_proposals * self.num_classes < self.max_per_img:
            raise ValueError('test_cfg.rcnn.max_per_img is above the candidates the '
                             'proposals give')

    def roi_levels(self, rois: torch.Tensor) -> torch.Tensor:
        """mmdet's ``map_roi_levels`` of ``rois (..., 4)``: ``floor(log2(v))`` clamped to
        ``[0, levels - 1]`` is the number of ``2^l`` (``l = 1 .. levels - 1``) at or below
        ``v = sqrt(w·h) / finest_scale + 1e-6``."""
        scale = torch.sqrt((rois[..., 2] - rois[..., 0]) * (rois[..., 3] - rois[..., 1]))
        v = scale / self.finest_scale + 1e-6
        level = torch.zeros_like(v, dtype=torch.long)
        for lvl in range(1, len(self.roi_args)):
            level = level + (v >= 2.0 ** lvl).long()
        return level

    def proposals(self, feats, width: torch.Tensor, height: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The RPN's ``proposals (N, P, 4)`` and a mask ``(N, P)`` of the real ones, best
        first, ``P = min(max_per_img, levels · nms_pre)``."""
        cls_scores, bbox_preds = self.detector.rpn_head(feats)
        boxes, scores, _, levels = self.rpn(cls_scores, bbox_preds, width, height)
        kept = batched_nms(boxes, scores, levels, self.rpn_iou, self.rpn.score_thr,
                           self.num_proposals)
        top, idx = kept.topk(self.num_proposals, 1)
        return _rows(boxes, idx), top > NO_THRESHOLD

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width, height = _image_size(x)
        feats = self.detector.extract_feat(x)
        proposals, real = self.proposals(feats, width, height)  # (N, P, 4), (N, P)
        p, c = self.num_proposals, self.num_classes
        flat_props = proposals.reshape(-1, 4)
        level = self.roi_levels(proposals)
        roi_feats, slots = [], []
        for lvl, args in enumerate(self.roi_args):
            where = torch.nonzero(real & (level == lvl))  # (R_l, 2): (image, slot)
            slot = where[:, 0] * p + where[:, 1]
            roi_feats.append(_RoIAlign.apply(feats[lvl], flat_props[slot], where[:, 0], *args))
            slots.append(slot)
        slot = torch.cat(slots)  # (R,): the RoIs level by level
        cls_score, bbox_pred = self.detector.roi_head.bbox_head(torch.cat(roi_feats))
        scores = cls_score.softmax(-1)[:, :c]  # (R, C)
        deltas = bbox_pred.reshape(bbox_pred.shape[0], -1, 4)  # (R, C or 1, 4)
        boxes = self.decode(flat_props[slot][:, None, :], deltas, width, height)
        boxes = boxes.expand(-1, c, -1) if self.class_agnostic else boxes
        # back to (image, slot, class); slots without a RoI score -1
        empty = torch.zeros_like(flat_props[:, :1])  # (N·P, 1)
        dev = x.device
        all_scores = (empty + torch.full((c,), -1.0, device=dev)).index_put((slot,), scores)
        all_boxes = (empty[..., None] + torch.zeros(c, 4, device=dev)).index_put((slot,), boxes)
        labels = (empty.long() + torch.arange(c, device=dev)).reshape(-1, p * c)
        all_scores, all_boxes = all_scores.reshape(-1, p * c), all_boxes.reshape(-1, p * c, 4)
        kept = batched_nms(all_boxes, all_scores, labels, self.iou_thr, self.score_thr,
                           self.max_per_img)
        return _best(all_boxes, kept, labels, self.max_per_img, self.score_thr)


def end_to_end(detector: nn.Module) -> EndToEnd:
    """The end-to-end form of an mmdet detector: :class:`EndToEndTwoStageDetector` for a
    detector with an RPN and RoI head (Faster R-CNN), else :class:`EndToEndDetector`.

    Raises:
        ValueError: one line saying what the detector has that the export cannot write.
    """
    if hasattr(detector, 'rpn_head') and hasattr(detector, 'roi_head'):
        return EndToEndTwoStageDetector(detector).eval()
    return EndToEndDetector(detector).eval()

"""A single-stage detector (RetinaNet) end to end: images in, boxes, scores and labels out, with
anchor generation, box decoding, the score threshold and NMS written in operators that export to
standard ONNX (``TopK``, ``Gather``, ``NonMaxSuppression``, ``ScatterND``...), for every batch
size and input size. The post-processing is mmdet's (``BaseDenseHead.predict_by_feat`` with
``rescale=False``): per FPN level the ``nms_pre`` highest (anchor, class) scores above
``score_thr``, decoded with the head's ``DeltaXYWHBBoxCoder`` (means, stds, ratio clip, clipped
to the input), boxes no wider or higher than ``min_bbox_size`` dropped, class-wise NMS, the
``max_per_img`` best kept. See docs/deploy.md."""
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


def _axis(t: torch.Tensor) -> torch.Tensor:
    """``0, 1, ..., len(t) - 1`` as float, from a 1-D tensor's length (``ConstantOfShape``
    and ``CumSum`` in a trace: the length stays dynamic)."""
    return torch.ones_like(t).cumsum(0) - 1


class EndToEndDetector(nn.Module):
    """``images (N, 3, H, W)`` (normalised, as the data preprocessor gives them) ->
    ``boxes (N, max_per_img, 4)`` (x1, y1, x2, y2 in input pixels), ``scores (N, max_per_img)``,
    ``labels (N, max_per_img)`` (int64), detections first in decreasing score; the remaining
    slots have score 0, label -1 and a zero box.

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
        coder, prior = head.bbox_coder, head.prior_generator
        if not getattr(head, 'use_sigmoid_cls', False):
            raise ValueError('end-to-end export needs a sigmoid classifier (RetinaNet)')
        if type(coder).__name__ != 'DeltaXYWHBBoxCoder' or coder.add_ctr_clamp:
            raise ValueError(f'end-to-end export decodes DeltaXYWHBBoxCoder boxes, not '
                             f'{type(coder).__name__}')
        if (cfg.get('nms') or {}).get('type', 'nms') != 'nms' or cfg.get('nms_pre', -1) <= 0:
            raise ValueError("end-to-end export needs test_cfg nms=dict(type='nms', ...) and "
                             'nms_pre > 0')
        self.detector = detector
        self.num_classes = head.cls_out_channels
        self.nms_pre, self.max_per_img = int(cfg['nms_pre']), int(cfg['max_per_img'])
        self.score_thr = float(cfg.get('score_thr', 0.0))
        self.iou_thr = float(cfg['nms']['iou_threshold'])
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.clip_border = bool(coder.clip_border)
        # the head calls decode() with its default ratio clip
        self.max_ratio = abs(math.log(getattr(coder, 'wh_ratio_clip', 16 / 1000)))
        self.register_buffer('means', torch.tensor(coder.means, dtype=torch.float32))
        self.register_buffer('stds', torch.tensor(coder.stds, dtype=torch.float32))
        self.strides = [tuple(float(v) for v in s) for s in prior.strides]  # (w, h)
        for i, base in enumerate(prior.base_anchors):
            self.register_buffer(f'base_anchors_{i}', base.detach().clone().float())
        if len(self.strides) * self.nms_pre * self.num_classes < self.max_per_img:
            raise ValueError('max_per_img is above the candidates nms_pre gives')

    def anchors(self, level: int, feat: torch.Tensor) -> torch.Tensor:
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

    def decode(self, anchors: torch.Tensor, deltas: torch.Tensor, width: torch.Tensor,
               height: torch.Tensor) -> torch.Tensor:
        """mmdet's ``delta2bbox``: ``anchors``, ``deltas`` ``(..., 4)`` -> boxes ``(..., 4)``
        clipped to ``[0, width] x [0, height]`` (0-d tensors)."""
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_scores, bbox_preds = self.detector(x, None, mode='tensor')
        width, height = torch.ones_like(x[0, 0, 0, :]).sum(), torch.ones_like(x[0, 0, :, 0]).sum()
        c, k = self.num_classes, self.nms_pre
        pad_anchors = k // c + 1  # rows that the padded scores' indices may point at
        boxes, scores, labels = [], [], []
        for level, (cls, box) in enumerate(zip(cls_scores, bbox_preds)):
            n = cls.shape[0]
            s = cls.permute(0, 2, 3, 1).reshape(n, -1).sigmoid()  # (N, H·W·A·C)
            s = torch.where(s > self.score_thr, s, torch.full_like(s, -1.0))
            # padded with k entries of -1: TopK takes k whatever the map's size
            s = torch.cat([s, torch.full_like(s[:, :1], -1.0).repeat(1, k)], 1)
            top, idx = s.topk(k, 1)  # (N, k): mmdet's nms_pre best above the threshold
            anchor_idx = torch.div(idx, c, rounding_mode='floor')
            d = box.permute(0, 2, 3, 1).reshape(n, -1, 4)  # (N, H·W·A, 4)
            d = torch.cat([d, torch.zeros_like(d[:, :1]).repeat(1, pad_anchors, 1)], 1)
            a = self.anchors(level, cls)
            a = torch.cat([a, torch.zeros_like(a[:1]).repeat(pad_anchors, 1)], 0)
            d = torch.gather(d, 1, anchor_idx[..., None].expand(-1, -1, 4))
            boxes.append(self.decode(a[anchor_idx], d, width, height))
            scores.append(top)
            labels.append(idx - anchor_idx * c)
        boxes, scores, labels = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(labels, 1)
        if self.min_bbox_size >= 0:
            wh = boxes[..., 2:] - boxes[..., :2]
            big = (wh[..., 0] > self.min_bbox_size) & (wh[..., 1] > self.min_bbox_size)
            scores = torch.where(big, scores, torch.full_like(scores, -1.0))
        classes = torch.arange(c, device=x.device)[None, :, None]
        per_class = torch.where(labels[:, None, :] == classes, scores[:, None, :],
                                torch.full_like(scores[:, None, :], -1.0))  # (N, C, K)
        sel = _NonMaxSuppression.apply(boxes, per_class, self.max_per_img, self.iou_thr,
                                       self.score_thr)  # (M, 3)
        b, cl, i = sel[:, 0], sel[:, 1], sel[:, 2]
        kept = torch.full_like(per_class, -1.0).index_put((b, cl, i), per_class[b, cl, i])
        top, idx = kept.flatten(1).topk(self.max_per_img, 1)  # (N, max_per_img)
        num = scores.shape[1]
        label = torch.div(idx, num, rounding_mode='floor')
        box = torch.gather(boxes, 1, (idx - label * num)[..., None].expand(-1, -1, 4))
        valid = top > self.score_thr
        return (box * valid[..., None], torch.where(valid, top, torch.zeros_like(top)),
                torch.where(valid, label, torch.full_like(label, -1)))

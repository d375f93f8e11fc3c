"""Post-processing of dense detections into a few segments per window."""
import json
from typing import Optional

import torch
from mmengine.structures import InstanceData

from re2tal_mm.structures import segment_nms

from mmaction.registry import MODELS


@MODELS.register_module()
class TALPostProcessor:
    """Score threshold, top-k, (Soft-)NMS and optional classifier fusion.

    Candidates are ordered by score before the top-k (as OpenTAD:
    threshold, then a descending sort of the flattened class scores). NMS is
    off by default: the windows of a video are merged by one NMS in
    :class:`~re2tal_mm.evaluation.TALMetric` (and ``localize_video``), which
    also clips to the video after it. Give ``nms`` here only where the
    metric does not merge (``TALMetric(nms=None)``), e.g. class-agnostic
    detections fused with an external classifier, whose NMS must come
    before the fusion.

    Args:
        score_thr (float, optional): Candidates scoring ``<=`` this are
            dropped (None: none). Defaults to 0.001.
        pre_nms_topk (int, optional): Best candidates kept (None: all).
            Defaults to 2000.
        min_duration (float, optional): Segments not longer than this
            (seconds) are dropped, so empty ones by default; None keeps all
            (OpenTAD). Defaults to 0.
        nms (dict, optional): Arguments of
            :func:`re2tal_mm.structures.segment_nms` (``method``,
            ``iou_threshold``, ``sigma``, ``min_score``, ``max_num``,
            ``class_agnostic``, ``length_eps``, ``voting_thresh``,
            ``procedure``) for an NMS per window. Defaults to None (no NMS
            here: the metric's merge does the one NMS of the video).
        class_agnostic (bool): Score a segment by its best class only (one
            candidate per position) instead of every class.
        external_classifier (str, optional): JSON file of video-level class
            scores, ``{video_id: [score per class]}`` (optionally under a
            ``"results"`` key). Detections are then taken class-agnostic and
            each is relabelled with the video's top-k classes, score
            multiplied (the ActivityNet recipe).
        external_topk (int): Classes taken from the classifier. Defaults to 2.
    """

    def __init__(self, score_thr: Optional[float] = 0.001,
                 pre_nms_topk: Optional[int] = 2000,
                 min_duration: Optional[float] = 0.,
                 nms: Optional[dict] = None,
                 class_agnostic: bool = False,
                 external_classifier: Optional[str] = None,
                 external_topk: int = 2):
        self.score_thr, self.pre_nms_topk = score_thr, pre_nms_topk
        self.min_duration, self.nms = min_duration, nms
        self.class_agnostic = class_agnostic or external_classifier is not None
        self.external_topk = external_topk
        self.external = None
        if external_classifier is not None:
            with open(external_classifier) as f:
                data = json.load(f)
            self.external = data.get('results', data)

    def select(self, scores: torch.Tensor, segments: torch.Tensor):
        """Threshold and top-k of one window, best first.

        Args:
            scores (Tensor): (P, K) class probabilities.
            segments (Tensor): (P, 2) segments, or (P, K, 2) one per class.

        Returns:
            tuple[Tensor, Tensor, Tensor]: segments, scores, labels.
        """
        if self.class_agnostic:
            flat, labels = scores.max(1)
        else:
            flat = scores.flatten()
        index = torch.arange(flat.numel(), device=flat.device)
        if self.score_thr is not None:
            keep = flat > self.score_thr
            flat, index = flat[keep], index[keep]
        flat, order = flat.sort(descending=True)
        order = order[:self.pre_nms_topk]
        flat, index = flat[:self.pre_nms_topk], index[order]
        if self.class_agnostic:
            point, labels = index, labels[index]
        else:
            point = index.div(scores.shape[1], rounding_mode='floor')
            labels = index % scores.shape[1]
        segs = segments[point, labels] if segments.ndim == 3 else \
            segments[point]
        return segs, flat, labels

    def __call__(self, scores, segments, video_id=None):
        """Select segments of one window.

        Args:
            scores (Tensor): (P, K) class probabilities.
            segments (Tensor): (P, 2) segments in seconds (or (P, K, 2)).
            video_id (str, optional): Key of the external classifier.

        Returns:
            InstanceData: ``segments``, ``scores``, ``labels``.
        """
        segs, scores, labels = self.select(scores, segments)
        if self.min_duration is not None:
            keep = (segs[:, 1] - segs[:, 0]) > self.min_duration
            segs, scores, labels = segs[keep], scores[keep], labels[keep]
        if self.nms is not None and len(scores):
            nms = dict(self.nms)
            nms.setdefault('class_agnostic', self.class_agnostic)
            segs, scores, labels = segment_nms(segs, scores, labels, **nms)
        if self.external is not None:
            segs, scores, labels = self.fuse(segs, scores, video_id)
        out = InstanceData()
        out.segments, out.scores, out.labels = segs, scores, labels.long()
        return out

    def fuse(self, segs, scores, video_id):
        """Relabel class-agnostic detections with the top-k video classes."""
        cls = torch.as_tensor(self.external[str(video_id)],
                              dtype=scores.dtype, device=scores.device)
        top, lab = cls.topk(min(self.external_topk, len(cls)))
        k = len(top)
        return (segs.repeat_interleave(k, 0),
                (scores[:, None] * top[None]).flatten(),
                lab.repeat(len(scores)))

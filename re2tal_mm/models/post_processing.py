"""Post-processing of dense detections into a few segments per window."""
import json

import torch
from mmengine.structures import InstanceData

from re2tal_mm.structures import segment_nms

from mmaction.registry import MODELS


@MODELS.register_module()
class TALPostProcessor:
    """Score threshold, top-k, (Soft-)NMS and optional classifier fusion.

    Args:
        score_thr (float): Candidates below are dropped. Defaults to 0.001.
        pre_nms_topk (int): Best candidates kept before NMS. Defaults to 2000.
        min_duration (float): Segments shorter (seconds) are dropped.
        nms (dict, optional): Arguments of
            :func:`re2tal_mm.structures.segment_nms` (``method``,
            ``iou_threshold``, ``sigma``, ``min_score``, ``max_num``,
            ``class_agnostic``); ``None`` skips NMS.
        class_agnostic (bool): Score a segment by its best class only (one
            candidate per position) instead of every class.
        external_classifier (str, optional): JSON file of video-level class
            scores, ``{video_id: [score per class]}`` (optionally under a
            ``"results"`` key). Detections are then taken class-agnostic and
            each is relabelled with the video's top-k classes, score
            multiplied (the ActivityNet recipe).
        external_topk (int): Classes taken from the classifier. Defaults to 2.
    """

    def __init__(self, score_thr=0.001, pre_nms_topk=2000, min_duration=0.,
                 nms=dict(method='soft', iou_threshold=0.1, sigma=0.5,
                          min_score=0.001, max_num=200),
                 class_agnostic=False, external_classifier=None,
                 external_topk=2):
        self.score_thr, self.pre_nms_topk = score_thr, pre_nms_topk
        self.min_duration, self.nms = min_duration, nms
        self.class_agnostic = class_agnostic or external_classifier is not None
        self.external_topk = external_topk
        self.external = None
        if external_classifier is not None:
            with open(external_classifier) as f:
                data = json.load(f)
            self.external = data.get('results', data)

    def __call__(self, scores, segments, video_id=None):
        """Select segments of one window.

        Args:
            scores (Tensor): (P, K) class probabilities.
            segments (Tensor): (P, 2) segments in seconds.
            video_id (str, optional): Key of the external classifier.

        Returns:
            InstanceData: ``segments``, ``scores``, ``labels``.
        """
        if self.class_agnostic:
            scores, labels = scores.max(1)
            idx = torch.arange(len(scores), device=scores.device)
        else:
            flat = scores.flatten()
            idx, labels = (torch.arange(flat.numel(), device=flat.device)
                           .div(scores.shape[1], rounding_mode='floor'),
                           torch.arange(flat.numel(), device=flat.device) %
                           scores.shape[1])
            scores = flat
        keep = scores > self.score_thr
        scores, labels, idx = scores[keep], labels[keep], idx[keep]
        if len(scores) > self.pre_nms_topk:
            scores, order = scores.topk(self.pre_nms_topk)
            labels, idx = labels[order], idx[order]
        segs = segments[idx]
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

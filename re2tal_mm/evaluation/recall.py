"""Recall@kx of temporal detections (Ego4D Moment Queries).

The rule of the Ego4D episodic-memory MQ evaluator as OpenTAD implements it
(``compute_topkx_recall_detection`` of ``opentad/evaluations/mAP.py``):
per class and video with ``n`` ground-truth segments of that class, the
``k * n`` highest-scored predictions of the class in the video are taken;
a ground-truth segment is recalled at threshold ``t`` if one of them has
``tIoU >= t`` with it (one prediction may recall several). A class's recall
is its recalled segments over all its segments; the result is the mean over
the ground-truth classes (a class without any prediction has recall 0;
predictions of other labels are ignored). The tIoU divides by the union
clipped at 1e-8, as there. Ties of score keep the order of the results
(the reference leaves them to numpy's unstable sort).
"""
from collections import defaultdict
from typing import Dict, Mapping, Sequence

import numpy as np

#: Ego4D MQ's Recall@kx
EGO4D_TOP_K = (1, 5)


def _tiou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(P, 2) x (G, 2) -> (P, G) tIoU, union clipped at 1e-8."""
    inter = (np.minimum(pred[:, None, 1], gt[None, :, 1]) -
             np.maximum(pred[:, None, 0], gt[None, :, 0])).clip(0)
    union = (gt[None, :, 1] - gt[None, :, 0]) + (
        pred[:, None, 1] - pred[:, None, 0]) - inter
    return inter / union.clip(1e-8)


def topkx_recall(ground_truth: Mapping[str, dict],
                 predictions: Mapping[str, Sequence[dict]],
                 tiou_thresholds: Sequence[float],
                 top_k: Sequence[int] = EGO4D_TOP_K) -> Dict:
    """Recall@kx per threshold and k (see the module docstring).

    Args:
        ground_truth (dict): ``video -> {"annotations": [{"segment",
            "label"}]}``.
        predictions (dict): ``video -> [{"segment", "score", "label"}]``.
        tiou_thresholds (Sequence[float]): tIoU thresholds.
        top_k (Sequence[int]): The k of Recall@kx. Defaults to (1, 5).

    Returns:
        dict: ``top_k``, ``tiou_thresholds``, ``recall`` ((T, K) nested
        list, mean over classes) and ``per_class_recall``.
    """
    thr = np.asarray(tiou_thresholds, dtype=np.float64)
    ks = [int(k) for k in top_k]
    gts = defaultdict(list)
    for vid, info in ground_truth.items():
        for a in info.get('annotations', []):
            gts[a['label'], vid].append([float(x) for x in a['segment']])
    classes = sorted({c for c, _ in gts})
    preds = defaultdict(list)
    for vid, ps in predictions.items():
        for p in ps:
            preds[p['label'], vid].append(
                (float(p['score']), [float(x) for x in p['segment']]))
    has_pred = {c for c, _ in preds}
    per_class = {}
    for c in classes:
        hits = np.zeros((len(thr), len(ks)))
        n_gts = 0
        for (label, vid), segs in gts.items():
            if label != c:
                continue
            n_gts += len(segs)
            ps = preds.get((c, vid))
            if not ps:
                continue
            order = np.argsort([-s for s, _ in ps], kind='stable')
            top = np.array([ps[i][1] for i in order[:max(ks) * len(segs)]])
            iou = _tiou(top, np.array(segs))  # (P, G)
            for ki, k in enumerate(ks):
                ok = iou[:k * len(segs)][None] >= thr[:, None, None]
                hits[:, ki] += ok.any(1).sum(1)
        per_class[c] = (hits / n_gts if c in has_pred else
                        np.zeros_like(hits)).tolist()
    recall = (np.mean([per_class[c] for c in classes], 0) if classes else
              np.zeros((len(thr), len(ks))))
    return dict(top_k=ks, tiou_thresholds=thr.tolist(),
                recall=np.asarray(recall).tolist(),
                per_class_recall=per_class)


def recall_metrics(result: Dict) -> Dict[str, float]:
    """``{'recall@0.30@1x': ...}`` entries of a :func:`topkx_recall`
    result."""
    return {f'recall@{t:.2f}@{k}x': float(v)
            for t, row in zip(result['tiou_thresholds'], result['recall'])
            for k, v in zip(result['top_k'], row)}

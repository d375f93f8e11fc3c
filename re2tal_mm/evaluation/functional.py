"""ActivityNet detection protocol (average precision over tIoU thresholds).

One vectorized implementation used by :class:`TALMetric` and
``tools/eval_detection.py``. Protocol: per class, predictions sorted by score
(stable for ties); each one matched greedily to the unmatched ground truth of
its video with the highest tIoU, if that tIoU >= t; VOC all-point interpolated
AP; mAP at a threshold is the mean over the classes present in the ground
truth; the average mAP is the mean over thresholds.

Matching is independent between (video, class) groups, so the k-th prediction
of every group is processed at once: the loop runs over ranks within a group,
not over predictions.
"""
import warnings

import numpy as np

ANET_TIOU_THRESHOLDS = tuple(np.round(np.linspace(0.5, 0.95, 10), 2).tolist())
THUMOS_TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def interpolated_ap(precision, recall):
    """VOC all-point interpolated AP of each row of (T, N) precision/recall."""
    t = precision.shape[0]
    mprec = np.concatenate([np.zeros((t, 1)), precision, np.zeros((t, 1))], 1)
    mrec = np.concatenate([np.zeros((t, 1)), recall, np.ones((t, 1))], 1)
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    return ((mrec[:, 1:] - mrec[:, :-1]) * mprec[:, 1:]).sum(1)


def _flatten_predictions(predictions):
    """``{video: [{segment, score, label}]}`` -> flat lists (file order)."""
    vids, segs, scores, labels = [], [], [], []
    for vid, preds in predictions.items():
        for p in preds:
            vids.append(vid)
            segs.append(p['segment'][:2])
            scores.append(p['score'])
            labels.append(p['label'])
    return vids, segs, scores, labels


def evaluate_detection(ground_truth, predictions,
                       tiou_thresholds=ANET_TIOU_THRESHOLDS):
    """Evaluate detections with the ActivityNet protocol.

    Args:
        ground_truth (dict): ``video_id -> {"annotations": [{"segment",
            "label"}], ...}`` (the ``database`` of an ActivityNet JSON,
            restricted to the evaluated subset).
        predictions (dict): ``video_id -> [{"segment", "score", "label"}]``
            (the ``results`` of a submission). Predictions for videos not in
            the ground truth are false positives; those whose label is not a
            ground-truth class are ignored (counted in a warning).
        tiou_thresholds (Sequence[float]): tIoU thresholds.

    Returns:
        dict: ``tiou_thresholds``, ``mAP`` (list per threshold),
        ``average_mAP``, ``per_class_AP`` (label -> list per threshold),
        ``num_ignored`` (predictions with an unknown label).
    """
    thr = np.asarray(tiou_thresholds, dtype=np.float64)
    classes = sorted({a['label'] for v in ground_truth.values()
                      for a in v.get('annotations', [])})
    cls_index = {c: i for i, c in enumerate(classes)}
    vid_index = {v: i for i, v in enumerate(ground_truth)}
    # ground truth, as (video, class) groups
    g_vid, g_cls, g_seg = [], [], []
    for vid, info in ground_truth.items():
        for a in info.get('annotations', []):
            g_vid.append(vid_index[vid])
            g_cls.append(cls_index[a['label']])
            g_seg.append(a['segment'][:2])
    g_seg = np.asarray(g_seg, dtype=np.float64).reshape(-1, 2)
    g_key = np.asarray(g_vid, np.int64) * len(classes) + np.asarray(
        g_cls, np.int64)
    npos = np.bincount(np.asarray(g_cls, np.int64), minlength=len(classes))
    # predictions
    vids, segs, scores, labels = _flatten_predictions(predictions)
    p_cls = np.fromiter((cls_index.get(lb, -1) for lb in labels), np.int64,
                        len(labels))
    known = p_cls >= 0
    num_ignored = int((~known).sum())
    if num_ignored:
        warnings.warn(f'{num_ignored} prediction(s) with a label that is not '
                      'a ground-truth class were ignored')
    unseen = len(vid_index)  # videos absent from the ground truth
    p_vid = np.fromiter((vid_index.get(v, unseen) for v in vids), np.int64,
                        len(vids))[known]
    p_seg = np.asarray(segs, dtype=np.float64).reshape(-1, 2)[known]
    p_score = np.asarray(scores, dtype=np.float64)[known]
    p_cls = p_cls[known]
    order = np.lexsort((np.arange(len(p_cls)), -p_score, p_cls))
    p_vid, p_seg, p_score, p_cls = (p_vid[order], p_seg[order],
                                    p_score[order], p_cls[order])
    p_key = p_vid * len(classes) + p_cls

    # padded ground truth per group key
    keys, g_group = np.unique(np.concatenate([g_key, p_key]),
                              return_inverse=True)
    g_group, p_group = g_group[:len(g_key)], g_group[len(g_key):]
    g_sorted = np.argsort(g_group, kind='stable')
    counts = np.bincount(g_group, minlength=len(keys))
    max_g = int(counts.max()) if len(g_key) else 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty(len(g_key), np.int64)
    slot[g_sorted] = np.arange(len(g_key)) - starts[g_group[g_sorted]]
    pad = np.full((len(keys), max(max_g, 1), 2), np.nan)
    pad[g_group, slot] = g_seg
    # rank of each prediction inside its group (already in score order)
    p_sorted = np.argsort(p_group, kind='stable')
    p_counts = np.bincount(p_group, minlength=len(keys))
    p_starts = np.concatenate([[0], np.cumsum(p_counts)[:-1]])
    rank = np.empty(len(p_group), np.int64)
    rank[p_sorted] = np.arange(len(p_group)) - p_starts[p_group[p_sorted]]

    tp = np.zeros((len(thr), len(p_group)), dtype=bool)
    if max_g and len(p_group):
        matched = np.zeros((len(keys), len(thr), max_g), dtype=bool)
        by_rank = np.argsort(rank, kind='stable')
        bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2))
        for r in range(rank.max() + 1):
            idx = by_rank[bounds[r]:bounds[r + 1]]
            grp = p_group[idx]
            gt = pad[grp]  # (n, G, 2)
            seg = p_seg[idx][:, None, :]
            inter = (np.minimum(seg[..., 1], gt[..., 1]) -
                     np.maximum(seg[..., 0], gt[..., 0])).clip(min=0)
            union = (seg[..., 1] - seg[..., 0]) + (gt[..., 1] - gt[..., 0]) \
                - inter
            iou = np.nan_to_num(inter / np.maximum(union, 1e-12), nan=-1.0)
            cand = (iou[:, None, :] >= thr[None, :, None]) & ~matched[grp]
            best = np.where(cand, iou[:, None, :], -1.0).argmax(-1)  # (n, T)
            hit = cand.any(-1)
            tp[:, idx] = hit.T
            n_i, t_i = np.nonzero(hit)
            matched[grp[n_i], t_i, best[n_i, t_i]] = True

    ap = np.zeros((len(classes), len(thr)))
    cls_bounds = np.searchsorted(p_cls, np.arange(len(classes) + 1))
    for c in range(len(classes)):
        if npos[c] == 0 or cls_bounds[c] == cls_bounds[c + 1]:
            continue
        tps = tp[:, cls_bounds[c]:cls_bounds[c + 1]]
        tp_cum = np.cumsum(tps, axis=1, dtype=np.float64)
        fp_cum = np.cumsum(~tps, axis=1, dtype=np.float64)
        ap[c] = interpolated_ap(tp_cum / (tp_cum + fp_cum), tp_cum / npos[c])
    m_ap = ap.mean(0) if len(classes) else np.zeros(len(thr))
    return dict(
        tiou_thresholds=[float(t) for t in thr],
        mAP=m_ap.tolist(),
        average_mAP=float(m_ap.mean()),
        per_class_AP={c: ap[i].tolist() for i, c in enumerate(classes)},
        num_ignored=num_ignored)


def format_ap_table(result, per_class=True):
    """Text table of a result of :func:`evaluate_detection`."""
    thr = result['tiou_thresholds']
    head = f'{"class":<32}' + ''.join(f'{t:>7.2f}' for t in thr) + \
        f'{"avg":>7}'
    lines = [head, '-' * len(head)]
    rows = list(result['per_class_AP'].items()) if per_class else []
    rows.append(('mAP', result['mAP']))
    for name, values in rows:
        lines.append(f'{name[:31]:<32}' + ''.join(
            f'{100 * v:>7.2f}' for v in values) +
            f'{100 * float(np.mean(values)):>7.2f}')
    return '\n'.join(lines)

"""Temporal action detection AP: the ActivityNet protocol and THUMOS-14's.

One vectorized implementation, used by :class:`TALMetric` and
``tools/eval_detection.py`` (one concept, the AP of detections against a
ground truth, with each protocol's matching rules: hence over 400 lines).
The ground truth is taken as given (no clipping to the video, no dropping of
empty segments), like the official evaluators.

``protocol='activitynet'`` (default) follows ``Evaluation/eval_detection.py``
and ``Evaluation/utils.py`` of github.com/activitynet/ActivityNet
(``ANETdetection``, ``compute_average_precision_detection``,
``segment_iou``, ``interpolated_prec_rec``):

- classes: the labels of the ground truth (``activity_index``); the mAP at a
  threshold is the mean over all of them (a class without predictions has
  AP 0);
- per class, predictions sorted by descending score; each one in turn is
  matched to the ground truth of its video, in descending tIoU, skipping
  those already matched: the first with ``tIoU >= t`` makes it a true
  positive; a prediction on a video without ground truth of its class is a
  false positive (also one on a video that is not in the ground truth at
  all: the official code keeps every video of the results file);
- ``tIoU = inter / (len_p + len_g - inter)`` exactly as ``segment_iou``
  computes it, segments as given: a zero-length prediction against a
  zero-length ground truth (or a reversed one against one of the same
  length) gives ``0 / 0 = nan``, which the official loop treats as a match
  ranked above every number (``argsort`` puts nan last, the loop walks it
  backwards, and ``nan < t`` is false); this is reproduced;
- AP: VOC all-point interpolation of the precision/recall curve.

Ties have no defined order in the official code: it sorts with numpy's
default ``argsort()[::-1]``, which is not stable (its tie order changes
with the numpy version, the CPU's sort kernels and the array length; the
Python 2 original also read the results in ``dict`` order). Here ties keep
the order of the results file (a stable sort), both for predictions of
equal score and for ground truths of equal tIoU (the first one in the
file). Files without ties (real-valued scores) give the official number; a
file whose scores tie has no single official number (the ActivityNet sample
results score every detection 1.0: with numpy 1.26 on an AVX-512 CPU the
official code's order gives an average mAP 0.6 points below file order).

``protocol='thumos14'`` follows THUMOS-14's MATLAB tool: ``TH14evalDet.m``
(the version with a threshold argument, ``TH14evalDet(detfilename, gtpath,
subset, threshold)``, as in ``THUMOS14_evalkit_20150930``), its
``TH14eventdetpr.m`` and ``intervaloverlapvalseconds.m``. The kit itself
could not be fetched here; the rules were read from copies of these files in
public repositories (S-CNN's ``TH14evalDet_Updated.m`` and its Python port
in sunnyxiaohu/R-C3D.pytorch ``evaluation/thumos14/Evaluation/``, a copy of
``TH14evalDet.m`` with that signature, ``intervaloverlapvalseconds.m``, and
C. Lea's Python port "recreated from the THUMOS2014 code"), which agree on:

- classes: those of the ground truth (the tool reads them from
  ``detclasslist.txt``); predictions of other labels are dropped, as the
  tool does with a warning;
- per class and video, detections sorted by descending score (MATLAB
  ``sort`` is stable: ties keep file order); **ground-truth-first**
  matching: each ground truth, in file order, takes the still-free
  detection of highest overlap (the first in score order on ties) if that
  overlap is **strictly greater** than the threshold;
- overlap: intervals put in order (``[min, max]``), ``iw = min(ends) -
  max(starts)``, overlap ``iw / (max(ends) - min(starts))`` if ``iw > 0``,
  else 0 (the tIoU for overlapping intervals);
- ``Ambiguous`` regions (the video's ``ambiguous`` list ``[[s, e], ...]``,
  class-agnostic): an unmatched detection that overlaps one (``iw > 0``)
  is removed, neither true nor false positive; matched ones stay true
  positives;
- AP: all detections of the class, sorted by descending score (stable;
  the concatenation is by video name, then by score within a video),
  ``ap = sum(prec at each true positive) / npos`` (TRECVID-style, no
  interpolation; ``npos`` counts every ground truth of the class).

Not implemented: the older 2014 tool (``TH14evaldet.m`` looping over
thresholds 0.1:0.1:0.5, an 11-point interpolated AP, and tied scores ranked
true positives first). Papers report 0.3:0.1:0.7
(:data:`THUMOS_TIOU_THRESHOLDS`).

``protocol='epic-kitchens-100'``, ``'ego4d-mq'``, ``'charades'``,
``'multithumos'``: ActivityNet's rules above with the dataset's thresholds
(:data:`DATASET_TIOU_THRESHOLDS`). EPIC-Kitchens-100's challenge evaluator
(``EvaluationCode/evaluate_detection_json_ek100.py`` of
github.com/epic-kitchens/C2-Action-Detection, newest version) is
ANETdetection with classes = the ground truth's labels of the task and the
predictions of other labels removed first, which is what is done here for
every protocol; its inputs (the challenge's CSV and submission format) are
read by :mod:`re2tal_mm.datasets.epic_kitchens`.

Matching is independent between (video, class) groups, so the k-th
prediction (ActivityNet) or ground truth (THUMOS-14) of every group is
processed at once: the loops run over ranks within a group.
"""
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from re2tal_mm.structures.reporting import name_some, warn

#: the official default, ``np.linspace(0.5, 0.95, 10)``, unrounded (its 9th
#: value is 0.8999999999999999, which a tIoU of that double meets)
ANET_TIOU_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10).tolist())
THUMOS_TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: the datasets scored with the ActivityNet evaluator's rules (its matching
#: and interpolated AP), each with its own thresholds: EPIC-Kitchens-100's
#: challenge evaluator (``evaluate_detection_json_ek100.py``, adapted from
#: ANETdetection, ``np.linspace(0.1, 0.5, 5)``), Ego4D Moment Queries'
#: (0.1:0.1:0.5, with Recall@kx: :mod:`.recall`), and the mAP OpenTAD
#: reports for Charades and MultiTHUMOS (0.1:0.1:0.9)
DATASET_TIOU_THRESHOLDS = {
    'epic-kitchens-100': tuple(np.linspace(0.1, 0.5, 5).tolist()),
    'ego4d-mq': tuple(np.linspace(0.1, 0.5, 5).tolist()),
    'charades': (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    'multithumos': (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
}
PROTOCOLS = ('activitynet', 'thumos14') + tuple(DATASET_TIOU_THRESHOLDS)


def default_tiou_thresholds(protocol: str = 'activitynet') -> tuple:
    """The usual thresholds of a protocol (ActivityNet: 0.5:0.05:0.95,
    THUMOS-14: 0.3:0.1:0.7, the others: :data:`DATASET_TIOU_THRESHOLDS`)."""
    _check_protocol(protocol)
    if protocol in DATASET_TIOU_THRESHOLDS:
        return DATASET_TIOU_THRESHOLDS[protocol]
    return (ANET_TIOU_THRESHOLDS if protocol == 'activitynet' else
            THUMOS_TIOU_THRESHOLDS)


def _check_protocol(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError(f'unknown protocol {protocol!r}; expected one of '
                         f'{PROTOCOLS}')


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC all-point interpolated AP of each row of (T, N) precision/recall."""
    t = precision.shape[0]
    mprec = np.concatenate([np.zeros((t, 1)), precision, np.zeros((t, 1))], 1)
    mrec = np.concatenate([np.zeros((t, 1)), recall, np.ones((t, 1))], 1)
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    return ((mrec[:, 1:] - mrec[:, :-1]) * mprec[:, 1:]).sum(1)


def unseen_videos(ground_truth: Mapping[str, Any],
                  predictions: Mapping[str, Sequence]) -> List[str]:
    """The predicted videos (with predictions) not in the ground truth."""
    return [v for v, ps in predictions.items()
            if v not in ground_truth and len(ps)]


def warn_of_unseen_videos(ground_truth: Mapping[str, Any],
                          predictions: Mapping[str, Sequence],
                          logger: Optional[Any] = None,
                          stacklevel: int = 3) -> List[str]:
    """Warn that predictions of videos not in the ground truth count as
    false positives (as in the official evaluator), naming a few.

    Args:
        ground_truth (Mapping): ``video_id -> info`` of the evaluated
            subset.
        predictions (Mapping): ``video_id -> [prediction]``.
        logger (logging.Logger | str | None): Where the warning goes, as
            for :func:`~re2tal_mm.structures.reporting.warn`. Defaults to
            None.
        stacklevel (int): As for ``warn``, counted from this function.
            Defaults to 3 (the caller of the function that calls it).

    Returns:
        list[str]: The unseen videos (:func:`unseen_videos`).
    """
    unseen = unseen_videos(ground_truth, predictions)
    if unseen:
        n_unseen = sum(len(predictions[v]) for v in unseen)
        warn(f'{len(unseen)} of {len(predictions)} predicted video(s) are '
             f'not in the ground truth; their {n_unseen} prediction(s) '
             f'count as false positives (as in the official evaluator): '
             f'{name_some(unseen)}', logger, stacklevel + 1)
    return unseen


def _flatten_predictions(predictions):
    """``{video: [{segment, score, label}]}`` -> flat lists (file order)."""
    vids, segs, scores, labels = [], [], [], []
    for vid, preds in predictions.items():
        for p in preds:
            vids.append(vid)
            segs.append([float(p['segment'][0]), float(p['segment'][1])])
            scores.append(float(p['score']))
            labels.append(p['label'])
    return vids, segs, scores, labels


def _slots(group, n_groups):
    """Rank of each item among those of its group (order of appearance)."""
    order = np.argsort(group, kind='stable')
    counts = np.bincount(group, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty(len(group), np.int64)
    slot[order] = np.arange(len(group)) - starts[group[order]]
    return slot, counts


def _pad(group, slot, counts, values, n_groups):
    """(n_groups, max_count, 2) array of ``values`` and its validity mask."""
    width = max(int(counts.max()) if len(group) else 0, 1)
    pad = np.zeros((n_groups, width, 2))
    valid = np.zeros((n_groups, width), bool)
    pad[group, slot] = values
    valid[group, slot] = True
    return pad, valid


def _by_rank(rank):
    """Yield the indices of the items of each rank, rank by rank."""
    if not len(rank):
        return
    by_rank = np.argsort(rank, kind='stable')
    bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2))
    for r in range(rank.max() + 1):
        yield by_rank[bounds[r]:bounds[r + 1]]


def _match_activitynet(g_group, g_seg, p_group, p_seg, n_groups, thr):
    """Prediction-first matching; predictions in processing order.

    Returns:
        np.ndarray: (T, P) bool, true positives.
    """
    tp = np.zeros((len(thr), len(p_group)), dtype=bool)
    if not len(g_group) or not len(p_group):
        return tp
    g_slot, g_counts = _slots(g_group, n_groups)
    pad, valid = _pad(g_group, g_slot, g_counts, g_seg, n_groups)
    matched = np.zeros((n_groups, len(thr), pad.shape[1]), dtype=bool)
    rank, _ = _slots(p_group, n_groups)
    for idx in _by_rank(rank):
        idx = idx[valid[p_group[idx]].any(1)]  # others: false positives
        grp = p_group[idx]
        gt, ok = pad[grp], valid[grp]  # (n, G, 2), (n, G)
        seg = p_seg[idx][:, None, :]
        # segment_iou of the official code, with its nan and inf
        inter = (np.minimum(seg[..., 1], gt[..., 1]) -
                 np.maximum(seg[..., 0], gt[..., 0])).clip(min=0)
        union = (gt[..., 1] - gt[..., 0]) + (seg[..., 1] - seg[..., 0]) \
            - inter
        with np.errstate(divide='ignore', invalid='ignore'):
            iou = inter / union
        free = ok[:, None, :] & ~matched[grp]  # (n, T, G)
        is_nan = free & np.isnan(iou)[:, None, :]
        cand = free & (iou[:, None, :] >= thr[None, :, None])
        best = np.where(cand, iou[:, None, :], -np.inf).argmax(-1)
        any_nan = is_nan.any(-1)
        best = np.where(any_nan, is_nan.argmax(-1), best)  # nan ranks first
        hit = any_nan | cand.any(-1)  # (n, T)
        tp[:, idx] = hit.T
        n_i, t_i = np.nonzero(hit)
        matched[grp[n_i], t_i, best[n_i, t_i]] = True
    return tp


def _th14_overlap(a, b):
    """``intervaloverlapvalseconds`` (normtype 0) of broadcast intervals."""
    a0, a1 = np.minimum(a[..., 0], a[..., 1]), np.maximum(a[..., 0],
                                                          a[..., 1])
    b0, b1 = np.minimum(b[..., 0], b[..., 1]), np.maximum(b[..., 0],
                                                          b[..., 1])
    iw = np.minimum(a1, b1) - np.maximum(a0, b0)
    ua = np.maximum(a1, b1) - np.minimum(a0, b0)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(iw > 0, iw / ua, 0.0)


def _match_thumos14(g_group, g_seg, p_group, p_seg, n_groups, thr):
    """Ground-truth-first matching (TH14eventdetpr); predictions in
    processing order (descending score, file order on ties, per group).

    Returns:
        np.ndarray: (T, P) bool, true positives.
    """
    if not len(g_group) or not len(p_group):
        return np.zeros((len(thr), len(p_group)), dtype=bool)
    p_slot, p_counts = _slots(p_group, n_groups)
    pad, valid = _pad(p_group, p_slot, p_counts, p_seg, n_groups)
    matched = np.zeros((n_groups, len(thr), pad.shape[1]), dtype=bool)
    g_slot, _ = _slots(g_group, n_groups)
    for gi in _by_rank(g_slot):  # k-th ground truth of every group
        grp = g_group[gi]
        ov = _th14_overlap(g_seg[gi][:, None, :], pad[grp])  # (n, P)
        free = valid[grp][:, None, :] & ~matched[grp]  # (n, T, P)
        val = np.where(free, ov[:, None, :], -np.inf)
        best = val.argmax(-1)  # first maximum, as MATLAB's max
        vm = np.take_along_axis(val, best[..., None], -1)[..., 0]
        hit = vm > thr[None, :]  # strictly greater; -inf when none free
        n_i, t_i = np.nonzero(hit)
        matched[grp[n_i], t_i, best[n_i, t_i]] = True
    return matched[p_group, :, p_slot].T


def _ambiguous_hits(ground_truth, vid_index, p_vid, p_seg):
    """Whether each prediction intersects (``iw > 0``) an ``ambiguous``
    region of its video."""
    a_vid, a_seg = [], []
    for vid, info in ground_truth.items():
        for s, e in info.get('ambiguous') or []:
            a_vid.append(vid_index[vid])
            a_seg.append([float(s), float(e)])
    hit = np.zeros(len(p_vid), dtype=bool)
    if not a_vid or not len(p_vid):
        return hit
    n = len(vid_index) + 1  # the last one: videos outside the gt
    a_vid = np.asarray(a_vid, np.int64)
    slot, counts = _slots(a_vid, n)
    pad, valid = _pad(a_vid, slot, counts, np.asarray(a_seg), n)
    step = 65536  # bounded memory
    for start in range(0, len(p_vid), step):
        v = p_vid[start:start + step]
        ov = _th14_overlap(p_seg[start:start + step][:, None, :], pad[v])
        hit[start:start + step] = ((ov > 0) & valid[v]).any(1)
    return hit


def evaluate_detection(ground_truth: Mapping[str, dict],
                       predictions: Mapping[str, Sequence[dict]],
                       tiou_thresholds: Optional[Sequence[float]] = None,
                       *,
                       protocol: str = 'activitynet',
                       logger: Optional[Any] = None,
                       warn_unseen_videos: bool = True) -> Dict[str, Any]:
    """Average precision of temporal detections, per class and threshold.

    See the module docstring for the exact rules of each protocol and their
    sources.

    Args:
        ground_truth (dict): ``video_id -> {"annotations": [{"segment",
            "label"}], "ambiguous": [[s, e], ...] (optional), ...}`` (the
            ``database`` of an ActivityNet-style JSON restricted to the
            evaluated subset, segments as in the file).
        predictions (dict): ``video_id -> [{"segment", "score", "label"}]``
            (the ``results`` of a submission). Predictions for videos not in
            the ground truth are false positives, as in the official
            evaluators (and named in a warning); those whose label is not a
            ground-truth class are dropped (named in a warning; the official
            ActivityNet code stops with a ``KeyError`` there, THUMOS-14's
            drops them with a warning).
        tiou_thresholds (Sequence[float] | None): tIoU thresholds.
            Defaults to None: the protocol's own
            (:func:`default_tiou_thresholds`).
        protocol (str): ``'activitynet'`` (the official ActivityNet
            evaluator), ``'thumos14'`` (THUMOS-14's TH14evalDet: ambiguous
            regions, ground-truth-first matching with overlap > t, AP summed
            at true positives), or a dataset of
            :data:`DATASET_TIOU_THRESHOLDS` (ActivityNet's rules; only the
            default thresholds differ). Defaults to ``'activitynet'``.
        logger (logging.Logger | str | None): Where warnings go, as for
            :func:`~re2tal_mm.structures.reporting.warn` (an object's
            ``warning()``, a ``print_log`` name); ``warnings.warn`` (and
            the current MMEngine logger's log files) if None. Defaults to
            None.
        warn_unseen_videos (bool): Warn about predicted videos that are not
            in the ground truth (:func:`warn_of_unseen_videos`; False: the
            caller has said so). Defaults to True.

    Returns:
        dict: ``tiou_thresholds``, ``mAP`` (list per threshold),
        ``average_mAP``, ``per_class_AP`` (label -> list per threshold),
        ``protocol``, ``num_ignored`` (predictions with an unknown label),
        ``unknown_labels`` (label -> count), ``unseen_videos`` (predicted
        videos not in the ground truth) and, for ``'thumos14'``,
        ``num_ambiguous_removed`` (list per threshold).
    """
    _check_protocol(protocol)
    if tiou_thresholds is None:
        tiou_thresholds = default_tiou_thresholds(protocol)
    thr = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    classes = sorted({a['label'] for v in ground_truth.values()
                      for a in v.get('annotations', [])})
    cls_index = {c: i for i, c in enumerate(classes)}
    n_cls = max(len(classes), 1)
    vid_index = {v: i for i, v in enumerate(ground_truth)}
    # ground truth, as (video, class) groups, in file order
    g_vid, g_cls, g_seg = [], [], []
    for vid, info in ground_truth.items():
        for a in info.get('annotations', []):
            g_vid.append(vid_index[vid])
            g_cls.append(cls_index[a['label']])
            g_seg.append([float(a['segment'][0]), float(a['segment'][1])])
    g_seg = np.asarray(g_seg, dtype=np.float64).reshape(-1, 2)
    g_cls = np.asarray(g_cls, np.int64)
    g_key = np.asarray(g_vid, np.int64) * n_cls + g_cls
    npos = np.bincount(g_cls, minlength=len(classes))

    # predictions
    vids, segs, scores, labels = _flatten_predictions(predictions)
    unknown = Counter(lb for lb in labels if lb not in cls_index)
    num_ignored = sum(unknown.values())
    if num_ignored:
        warn(f'{num_ignored} prediction(s) with a label that is not a '
             f'ground-truth class were ignored: '
             f'{name_some([lb for lb, _ in unknown.most_common()], unknown)}',
             logger)
    unseen = (warn_of_unseen_videos(ground_truth, predictions, logger)
              if warn_unseen_videos else
              unseen_videos(ground_truth, predictions))
    if protocol == 'thumos14' and ground_truth and not any(
            'ambiguous' in v for v in ground_truth.values()):
        warn('protocol thumos14: the ground truth has no "ambiguous" '
             'regions, so no detection is spared as ambiguous (the '
             'official tool reads them from Ambiguous_<subset>.txt; the '
             'THUMOS-14 converter keeps them)', logger)

    p_cls = np.fromiter((cls_index.get(lb, -1) for lb in labels), np.int64,
                        len(labels))
    known = p_cls >= 0
    unseen_id = len(vid_index)  # one index for videos absent from the gt
    p_vid = np.fromiter((vid_index.get(v, unseen_id) for v in vids),
                        np.int64, len(vids))[known]
    p_seg = np.asarray(segs, dtype=np.float64).reshape(-1, 2)[known]
    p_score = np.asarray(scores, dtype=np.float64)[known]
    p_cls = p_cls[known]
    p_file = np.arange(len(p_cls))
    # processing order: per class, descending score, file order on ties
    order = np.lexsort((p_file, -p_score, p_cls))
    p_vid, p_seg, p_score, p_cls, p_file = (
        p_vid[order], p_seg[order], p_score[order], p_cls[order],
        p_file[order])
    p_key = p_vid * n_cls + p_cls

    keys, inverse = np.unique(np.concatenate([g_key, p_key]),
                              return_inverse=True)
    g_group, p_group = inverse[:len(g_key)], inverse[len(g_key):]
    match = (_match_thumos14 if protocol == 'thumos14' else
             _match_activitynet)
    tp = match(g_group, g_seg, p_group, p_seg, len(keys), thr)

    ap = np.zeros((len(classes), len(thr)))
    extra = {}
    if protocol != 'thumos14':
        bounds = np.searchsorted(p_cls, np.arange(len(classes) + 1))
        for c in range(len(classes)):
            tps = tp[:, bounds[c]:bounds[c + 1]]
            if npos[c] == 0 or not tps.shape[1]:
                continue
            tp_cum = np.cumsum(tps, axis=1, dtype=np.float64)
            fp_cum = np.cumsum(~tps, axis=1, dtype=np.float64)
            ap[c] = interpolated_ap(tp_cum / (tp_cum + fp_cum),
                                    tp_cum / npos[c])
    else:
        amb = _ambiguous_hits(ground_truth, vid_index, p_vid, p_seg)
        fp = ~tp & ~amb[None, :]
        extra['num_ambiguous_removed'] = (~tp & amb[None, :]).sum(1).tolist()
        # AP order: per class, descending score; ties by video name, then
        # by the order within the video (file order)
        names = sorted(set(ground_truth) | set(predictions))
        name_rank = {v: i for i, v in enumerate(names)}
        p_name = np.fromiter((name_rank[v] for v in vids), np.int64,
                             len(vids))[known][order]
        ap_order = np.lexsort((p_file, p_name, -p_score, p_cls))
        tp, fp, cls_sorted = tp[:, ap_order], fp[:, ap_order], p_cls[
            ap_order]
        bounds = np.searchsorted(cls_sorted, np.arange(len(classes) + 1))
        for c in range(len(classes)):
            tps = tp[:, bounds[c]:bounds[c + 1]]
            fps = fp[:, bounds[c]:bounds[c + 1]]
            if npos[c] == 0 or not tps.any():
                continue
            tp_cum = np.cumsum(tps, axis=1, dtype=np.float64)
            fp_cum = np.cumsum(fps, axis=1, dtype=np.float64)
            with np.errstate(invalid='ignore'):
                prec = tp_cum / (tp_cum + fp_cum)
            ap[c] = np.where(tps, prec, 0.0).sum(1) / npos[c]
    m_ap = ap.mean(0) if len(classes) else np.zeros(len(thr))
    return dict(
        tiou_thresholds=[float(t) for t in thr],
        mAP=m_ap.tolist(),
        average_mAP=float(m_ap.mean()) if len(thr) else 0.0,
        per_class_AP={c: ap[i].tolist() for i, c in enumerate(classes)},
        protocol=protocol,
        num_ignored=num_ignored,
        unknown_labels=dict(unknown.most_common()),
        unseen_videos=unseen,
        **extra)


def format_ap_table(result: dict, per_class: bool = True) -> str:
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

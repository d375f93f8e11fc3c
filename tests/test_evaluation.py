import json
import logging
import os.path as osp
import sys
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from re2tal_mm.datasets.annotations import (convert_bsn_activitynet,
                                            convert_gtad_thumos,
                                            dump_activitynet_json,
                                            load_activitynet_json)
from re2tal_mm.evaluation import TALMetric, evaluate_detection
from re2tal_mm.evaluation.functional import (ANET_TIOU_THRESHOLDS,
                                             THUMOS_TIOU_THRESHOLDS)

from mmaction.structures import ActionDataSample

T = (0.5, 0.75)
TOOLS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools')


def gt(**videos):
    return {v: dict(subset='validation', duration=100.0, annotations=[
        dict(segment=list(s), label=lb) for s, lb in anns])
        for v, anns in videos.items()}


def p(seg, score, label='x'):
    return dict(segment=list(seg), score=score, label=label)


def ap_of(res, label='x'):
    return res['per_class_AP'][label]


def test_hand_computed_cases():
    g = gt(a=[((0, 10), 'x')])
    assert ap_of(evaluate_detection(g, dict(a=[p((0, 10), .9)]), T)) == [1, 1]
    # duplicate: tp, fp, tp over 2 gts -> 0.5 * 1 + 0.5 * 2 / 3
    g2 = gt(a=[((0, 10), 'x'), ((20, 30), 'x')])
    res = evaluate_detection(g2, dict(a=[p((0, 10), .9), p((0, 10), .8),
                                         p((20, 30), .7)]), T)
    assert np.allclose(ap_of(res), 0.5 + 0.5 * 2 / 3)
    # tie: the file order decides (stable sort). The official evaluator
    # sorts with numpy's unstable argsort()[::-1]: its order of tied scores
    # depends on the numpy version, the CPU's sort kernels and the number of
    # predictions (with AVX-512 numpy 1.26 even 4 values tie differently
    # from a stable sort), so it has no defined tie order to follow; ours
    # is the one documented in functional.py. The comparisons with the
    # literal reference below use tie-free scores (or pin its ties to ours).
    fp_first = dict(a=[p((50, 60), .5), p((0, 10), .5)])
    tp_first = dict(a=[p((0, 10), .5), p((50, 60), .5)])
    assert ap_of(evaluate_detection(g, fp_first, T)) == [.5, .5]
    assert ap_of(evaluate_detection(g, tp_first, T)) == [1, 1]
    # a prediction on a video without ground truth is a false positive
    with pytest.warns(UserWarning, match="not in the ground truth.*'z'"):
        res = evaluate_detection(g, dict(z=[p((0, 10), .9)],
                                         a=[p((0, 10), .5)]), T)
    assert ap_of(res) == [.5, .5] and res['unseen_videos'] == ['z']
    # class without predictions: AP 0, counted in the mean; unknown labels
    # are dropped and named
    g3 = gt(a=[((0, 10), 'x'), ((20, 30), 'y')])
    with pytest.warns(UserWarning, match=r"1 prediction.*'q' \(1\)"):
        res = evaluate_detection(g3, dict(a=[p((0, 10), .9),
                                             p((0, 10), .9, 'q')]), T)
    assert res['per_class_AP']['y'] == [0, 0]
    assert res['mAP'] == [.5, .5] and res['num_ignored'] == 1
    assert res['unknown_labels'] == dict(q=1)
    # threshold: tIoU 0.6 counts at 0.5, not at 0.75; tIoU == t counts
    res = evaluate_detection(g, dict(a=[p((0, 6), .9)]), T)
    assert ap_of(res) == [1, 0] and res['average_mAP'] == .5
    assert ap_of(evaluate_detection(g, dict(a=[p((0, 5), .9)]), T)) == [1, 0]
    # equal tIoU (9 / 11 with both): the first ground truth in file order
    # takes it (the official order is argsort's, undefined on ties), so at
    # 0.75 the second prediction finds A taken and B too far (2 / 3)
    g6 = gt(a=[((0, 10), 'x'), ((2, 12), 'x')])
    res = evaluate_detection(g6, dict(a=[p((1, 11), .9), p((0, 10), .8)]), T)
    assert ap_of(res) == [1, .5]
    # the ground truth is used as given: a segment past the video's end
    # (duration 100) is matched unclipped
    g4 = gt(a=[((90, 110), 'x')])
    assert ap_of(evaluate_detection(g4, dict(a=[p((90, 110), .9)]), T)) == [
        1, 1]
    # official segment_iou quirk: a zero-length prediction on a zero-length
    # ground truth gives 0 / 0 = nan, which the official loop matches
    g5 = gt(a=[((5, 5), 'x')])
    assert ap_of(evaluate_detection(g5, dict(a=[p((7, 7), .9)]), T)) == [
        1, 1]
    with pytest.raises(ValueError, match='unknown protocol'):
        evaluate_detection(g, {}, T, protocol='voc')


# --------------------------------------------------------------------------
# Literal reimplementation of the official ActivityNet evaluator
# (github.com/activitynet/ActivityNet, Evaluation/eval_detection.py and
# Evaluation/utils.py), written from its source, loop for loop.
# --------------------------------------------------------------------------
def official_segment_iou(target_segment, candidate_segments):
    """``utils.segment_iou``."""
    tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
    tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
    segments_intersection = (tt2 - tt1).clip(0)
    segments_union = (candidate_segments[:, 1] - candidate_segments[:, 0]) \
        + (target_segment[1] - target_segment[0]) - segments_intersection
    with np.errstate(divide='ignore', invalid='ignore'):
        return segments_intersection.astype(float) / segments_union


def official_interpolated_prec_rec(prec, rec):
    """``utils.interpolated_prec_rec`` (VOC 2011 all-point)."""
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def official_compute_ap(ground_truth, prediction, tiou_thresholds,
                        tie_order):
    """``compute_average_precision_detection`` on lists of rows:
    ground truth ``(video, t_start, t_end)``, prediction ``(video, t_start,
    t_end, score)``, both in file order (what ``groupby('label')`` keeps).

    ``tie_order='official'`` sorts literally with ``argsort()[::-1]``;
    ``'stable'`` pins the ties that expression leaves undefined to file
    order (scores: ``argsort(-score, kind='stable')``; ground truths of
    equal tIoU: file order, nan first as ``argsort()[::-1]`` puts it).
    """
    ap = np.zeros(len(tiou_thresholds))
    if not prediction:  # prediction.empty
        return ap
    npos = float(len(ground_truth))
    lock_gt = np.ones((len(tiou_thresholds), len(ground_truth))) * -1
    scores = np.array([row[3] for row in prediction])
    if tie_order == 'official':
        sort_idx = scores.argsort()[::-1]
    else:
        sort_idx = np.argsort(-scores, kind='stable')
    prediction = [prediction[i] for i in sort_idx]
    tp = np.zeros((len(tiou_thresholds), len(prediction)))
    fp = np.zeros((len(tiou_thresholds), len(prediction)))
    ground_truth_gbvn = {}  # groupby('video-id'): rows in file order
    for j, row in enumerate(ground_truth):
        ground_truth_gbvn.setdefault(row[0], []).append(j)
    for idx, this_pred in enumerate(prediction):
        if this_pred[0] not in ground_truth_gbvn:  # get_group raises
            fp[:, idx] = 1
            continue
        this_gt = ground_truth_gbvn[this_pred[0]]  # its 'index' column
        tiou_arr = official_segment_iou(
            np.array(this_pred[1:3]),
            np.array([ground_truth[j][1:3] for j in this_gt]))
        if tie_order == 'official':
            tiou_sorted_idx = tiou_arr.argsort()[::-1]
        else:
            nan = np.isnan(tiou_arr)
            tiou_sorted_idx = np.lexsort((np.arange(len(tiou_arr)),
                                          -np.where(nan, 0, tiou_arr), ~nan))
        for tidx, tiou_thr in enumerate(tiou_thresholds):
            for jdx in tiou_sorted_idx:
                if tiou_arr[jdx] < tiou_thr:
                    fp[tidx, idx] = 1
                    break
                if lock_gt[tidx, this_gt[jdx]] >= 0:
                    continue
                tp[tidx, idx] = 1
                lock_gt[tidx, this_gt[jdx]] = idx
                break
            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1
    tp_cumsum = np.cumsum(tp, axis=1).astype(float)
    fp_cumsum = np.cumsum(fp, axis=1).astype(float)
    recall_cumsum = tp_cumsum / npos
    precision_cumsum = tp_cumsum / (tp_cumsum + fp_cumsum)
    for tidx in range(len(tiou_thresholds)):
        ap[tidx] = official_interpolated_prec_rec(precision_cumsum[tidx, :],
                                                  recall_cumsum[tidx, :])
    return ap


def reference_ap(ground_truth, predictions, thresholds, tie_order='official'):
    """Slow, literal port of ``ANETdetection`` (import + evaluate).

    ``activity_index`` is built from the ground truth (the subset given);
    every video of the results is kept; a prediction whose label is not in
    ``activity_index`` makes the official code raise ``KeyError``: here it
    is dropped, as :func:`evaluate_detection` does (no blocked videos: the
    official list is fetched from a server).
    """
    thresholds = np.asarray(thresholds, dtype=float)
    activity_index, cidx = {}, 0
    gt_rows = []
    for videoid, v in ground_truth.items():
        for ann in v['annotations']:
            if ann['label'] not in activity_index:
                activity_index[ann['label']] = cidx
                cidx += 1
            gt_rows.append((videoid, float(ann['segment'][0]),
                            float(ann['segment'][1]),
                            activity_index[ann['label']]))
    pred_rows = []
    for videoid, v in predictions.items():
        for result in v:
            if result['label'] not in activity_index:
                continue
            pred_rows.append((videoid, float(result['segment'][0]),
                              float(result['segment'][1]),
                              activity_index[result['label']],
                              result['score']))
    out = {}
    for label, c in activity_index.items():
        out[label] = official_compute_ap(
            [r[:3] for r in gt_rows if r[3] == c],
            [r[:3] + r[4:] for r in pred_rows if r[3] == c], thresholds,
            tie_order).tolist()
    return out


def assert_equal_to_reference(res, ref, tol=1e-9):
    """Every per-class AP and the mAP equal; returns the largest gap."""
    assert set(res['per_class_AP']) == set(ref)
    gap = 0.0
    for c, aps in ref.items():
        diff = np.abs(np.asarray(res['per_class_AP'][c]) - aps).max()
        assert diff <= tol, (c, res['per_class_AP'][c], aps)
        gap = max(gap, float(diff))
    m_ap = np.mean(list(ref.values()), 0)
    diff = np.abs(np.asarray(res['mAP']) - m_ap).max()
    assert diff <= tol and abs(res['average_mAP'] - m_ap.mean()) <= tol
    return max(gap, float(diff))


def assert_tie_free(predictions):
    by_label = {}
    for preds in predictions.values():
        for q in preds:
            by_label.setdefault(q['label'], []).append(q['score'])
    for label, scores in by_label.items():
        assert len(set(scores)) == len(scores), label


def synthetic(rng, n_videos=30, labels=('a', 'b', 'c'), extra=2,
              degenerate=False):
    g, preds = {}, {}
    for v in range(n_videos):
        anns = []
        for _ in range(rng.integers(0, 5)):
            s = rng.uniform(0, 80)
            anns.append(((s, s + rng.uniform(1, 20)), rng.choice(labels)))
        if degenerate and v % 3 == 0:  # zero-length, past the end, twice
            anns += [((40.0, 40.0), 'a'), ((95.0, 130.0), 'b'),
                     ((10.0, 20.0), 'c'), ((10.0, 20.0), 'c')]
        g.update(gt(**{f'v{v}': anns}))
        qs = []
        for (s, e), lb in anns * 2:
            j = rng.normal(0, 2, 2)
            qs.append(p((s + j[0], e + j[1] + 0.1), float(rng.random()),
                        lb if rng.random() < .8 else rng.choice(labels)))
        for _ in range(rng.integers(0, 4)):
            s = rng.uniform(0, 80)
            qs.append(p((s, s + 5), float(rng.random()), rng.choice(labels)))
        if degenerate and v % 3 == 0:  # zero-length, reversed
            qs += [p((41.0, 41.0), float(rng.random()), 'a'),
                   p((20.0, 10.0), float(rng.random()), 'c'),
                   p((95.0, 130.0), float(rng.random()), 'b')]
        preds[f'v{v}' if v < n_videos - extra else f'extra{v}'] = qs
    return g, preds


@pytest.mark.filterwarnings('ignore::UserWarning')
@pytest.mark.parametrize('degenerate', [False, True])
def test_against_slow_reference(degenerate):
    rng = np.random.default_rng(0)
    g, preds = synthetic(rng, degenerate=degenerate)
    assert_tie_free(preds)
    for thr in (THUMOS_TIOU_THRESHOLDS, ANET_TIOU_THRESHOLDS):
        res = evaluate_detection(g, preds, thr)
        assert_equal_to_reference(res, reference_ap(g, preds, thr))
    # many ties (scores on a 0.1 grid): equal to the reference with its
    # undefined tie order pinned to file order
    for qs in preds.values():
        for q in qs:
            q['score'] = round(q['score'], 1)
    res = evaluate_detection(g, preds, THUMOS_TIOU_THRESHOLDS)
    assert_equal_to_reference(res, reference_ap(
        g, preds, THUMOS_TIOU_THRESHOLDS, tie_order='stable'))


def _anet_validation(shared_data):
    """The validation ground truth as converted: unclipped, like the source
    (converters keep segments as they are; only training clips)."""
    root = osp.join(shared_data, 'activitynet-1.3')
    db = convert_bsn_activitynet(osp.join(root, 'anet_anno_action.json'),
                                 osp.join(root, 'video_info_new.csv'))
    val = OrderedDict((v, i) for v, i in db.items()
                      if i['subset'] == 'validation')
    with open(osp.join(root, 'sample_detection_prediction.json')) as f:
        preds = json.load(f)['results']
    return val, preds


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_reference_on_activitynet(shared_data, capsys):
    """Fast path == literal official algorithm on ActivityNet-1.3 validation
    (all 4,728 videos, 200 classes; the ground truth unclipped: 71 segments
    end past their video, 3 have zero length) against the official sample
    results, to 1e-9 on every per-class AP and on the mAP.

    The sample results score every detection 1.0, so their order is all
    ties, which the official code leaves to numpy's unstable sort: on the
    file as it is, the reference's ties are pinned to file order (ours); then
    the ties are broken by random scores and the reference sorts literally.
    """
    val, preds = _anet_validation(shared_data)
    assert sum(a['segment'][1] > i['duration'] for i in val.values()
               for a in i['annotations']) == 71
    thr = ANET_TIOU_THRESHOLDS
    res, t_fast = _timed(evaluate_detection, val, preds, thr)
    ref, t_ref = _timed(reference_ap, val, preds, thr, tie_order='stable')
    gap = assert_equal_to_reference(res, ref)
    lit = reference_ap(val, preds, thr)  # this machine's argsort ties
    rng = np.random.default_rng(1)
    untied = {v: [dict(q, score=float(rng.random())) for q in qs]
              for v, qs in preds.items()}
    assert_tie_free(untied)
    res2 = evaluate_detection(val, untied, thr)
    ref2, t_ref2 = _timed(reference_ap, val, untied, thr)
    gap2 = assert_equal_to_reference(res2, ref2)
    with capsys.disabled():
        print(f'\nANet-1.3 val: fast {t_fast:.2f} s, reference {t_ref:.1f} '
              f'+ {t_ref2:.1f} s; max |fast - reference| {gap:.1e} (file), '
              f'{gap2:.1e} (untied); average mAP {res["average_mAP"]:.6f} '
              f'(literal argsort ties here: '
              f'{np.mean(list(lit.values())):.6f})')


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_reference_on_thumos(shared_data, capsys):
    """Fast path == literal official algorithm on THUMOS-14 test (210 videos,
    3,311 segments, as in thumos_gt.json) against a results file made from
    it: jittered segments, random scores, 15% wrong labels, background
    detections, extra videos and an unknown label."""
    gt_file = osp.join(shared_data, 'thumos-14', 'thumos_gt.json')
    test = load_activitynet_json(gt_file, 'test', clip=False)
    preds = thumos_like_results(test, np.random.default_rng(2))
    assert_tie_free(preds)
    thr = THUMOS_TIOU_THRESHOLDS
    res, t_fast = _timed(evaluate_detection, test, preds, thr)
    assert res['num_ignored'] > 0 and res['unseen_videos']
    ref, t_ref = _timed(reference_ap, test, preds, thr)
    gap = assert_equal_to_reference(res, ref)
    with capsys.disabled():
        print(f'\nTHUMOS-14 test: fast {t_fast:.2f} s, reference {t_ref:.1f}'
              f' s; max |fast - reference| {gap:.1e}; average mAP '
              f'{res["average_mAP"]:.6f}')


def thumos_like_results(database, rng, ambiguous_hits=False):
    labels = sorted({a['label'] for i in database.values()
                     for a in i['annotations']})
    preds = {}
    for vid, info in database.items():
        qs = []
        for a in info['annotations']:
            s, e = a['segment']
            for _ in range(rng.integers(1, 3)):
                j = rng.normal(0, 0.15 * (e - s) + 0.2, 2)
                lb = a['label'] if rng.random() < .85 else rng.choice(labels)
                qs.append(p((s + j[0], e + j[1]), float(rng.random()), lb))
        for _ in range(rng.integers(0, 6)):
            s = rng.uniform(0, 200)
            qs.append(p((s, s + rng.uniform(1, 10)), float(rng.random()),
                        rng.choice(labels)))
        if ambiguous_hits:  # detections inside the ambiguous regions
            for s, e in info.get('ambiguous', []):
                qs.append(p((s, e), float(rng.random()), rng.choice(labels)))
        preds[vid] = qs
    preds['video_test_0000001'] = [p((1, 5), .3, labels[0])]
    preds['video_test_9999999'] = [p((1, 5), .95, labels[1])]
    preds[next(iter(database))].append(p((0, 1), .5, 'NotAClass'))
    return preds


# --------------------------------------------------------------------------
# THUMOS-14 protocol: literal port of TH14evalDet.m / TH14eventdetpr.m /
# intervaloverlapvalseconds.m (THUMOS14_evalkit_20150930, the version with
# a threshold argument), loop for loop.
# --------------------------------------------------------------------------
def th14_overlap(i1, i2):
    """``intervalsingleoverlapvalseconds`` with normtype 0."""
    i1 = [min(i1), max(i1)]
    i2 = [min(i2), max(i2)]
    ov = 0
    bu = [min(i1[0], i2[0]), max(i1[1], i2[1])]
    ua = bu[1] - bu[0]
    bi = [max(i1[0], i2[0]), min(i1[1], i2[1])]
    iw = bi[1] - bi[0]
    if iw > 0:
        ov = iw / ua
    return ov


def th14_eventdetpr(per_video, npos, overlapthresh):
    """``TH14eventdetpr`` for one class; ``per_video``: sorted video names
    -> (gt intervals, ambiguous intervals, detections (interval, conf)),
    each in file order."""
    unsort_conf, unsort_flag = [], []
    for gt_i, amb, det, ov in per_video:
        if not det:
            continue
        order = sorted(range(len(det)), key=lambda i: -det[i][1])  # stable
        det = [det[i] for i in order]
        conf = [d[1] for d in det]
        indfree = [1] * len(det)
        indamb = [0] * len(det)
        if gt_i:
            ov = [[row[i] for i in order] for row in ov]
            for k in range(len(gt_i)):
                ind = [j for j in range(len(det)) if indfree[j]]
                if not ind:  # max([]) is empty: no assignment
                    continue
                vals = [ov[k][j] for j in ind]
                vm = max(vals)
                im = vals.index(vm)  # first maximum
                if vm > overlapthresh:
                    indfree[ind[im]] = 0
        if amb:
            indamb = [sum(th14_overlap(a, d[0]) for a in amb) for d in det]
        idx1 = [j for j in range(len(det)) if indfree[j] == 0]
        idx2 = [j for j in range(len(det)) if indfree[j] == 1 and
                indamb[j] == 0]
        flag = [1] * len(idx1) + [2] * len(idx2)
        both = idx1 + idx2
        tt = sorted(range(len(both)), key=both.__getitem__)
        unsort_conf += [conf[both[i]] for i in tt]
        unsort_flag += [flag[i] for i in tt]
    if not unsort_conf:
        return 0.0
    is_ = sorted(range(len(unsort_conf)), key=lambda i: -unsort_conf[i])
    flags = np.array([unsort_flag[i] for i in is_])
    tp = np.cumsum(flags == 1)
    fp = np.cumsum(flags == 2)
    prec = tp / (fp + tp)
    ap = 0.0  # prap(rec, prec, tmp, npos)
    for i in range(len(prec)):
        if flags[i] == 1:
            ap = ap + prec[i]
    return ap / npos


def reference_th14(ground_truth, predictions, thresholds):
    """``TH14evalDet`` over the ground-truth classes (``detclasslist``):
    per class and threshold, ``TH14eventdetpr``. Overlaps of a (video,
    class) are computed once for all thresholds (the same numbers)."""
    classes = sorted({a['label'] for i in ground_truth.values()
                      for a in i['annotations']})
    videonames = sorted(set(ground_truth) | set(predictions))
    out = {}
    for c in classes:
        npos = sum(a['label'] == c for i in ground_truth.values()
                   for a in i['annotations'])
        assert npos > 0
        per_video = []
        for v in videonames:
            info = ground_truth.get(v, {})
            gt_i = [[float(x) for x in a['segment']]
                    for a in info.get('annotations', []) if a['label'] == c]
            amb = [[float(x) for x in s] for s in info.get('ambiguous', [])]
            det = [([float(x) for x in q['segment']], q['score'])
                   for q in predictions.get(v, []) if q['label'] == c]
            ov = [[th14_overlap(g, d[0]) for d in det] for g in gt_i]
            per_video.append((gt_i, amb, det, ov))
        out[c] = [th14_eventdetpr(per_video, npos, t) for t in thresholds]
    return out


@pytest.mark.filterwarnings('ignore:protocol thumos14')
def test_thumos14_protocol_hand_cases():
    th = dict(protocol='thumos14')
    # an unmatched detection on an ambiguous region is not a false positive
    g = gt(a=[((0, 10), 'x')])
    g['a']['ambiguous'] = [[50, 60]]
    preds = dict(a=[p((52, 58), .9), p((0, 10), .5)])
    res = evaluate_detection(g, preds, T, **th)
    assert ap_of(res) == [1, 1] and res['num_ambiguous_removed'] == [1, 1]
    assert ap_of(evaluate_detection(g, preds, T)) == [.5, .5]  # ActivityNet
    # AP summed at true positives / npos, not interpolated: FP, TP, TP
    g2 = gt(a=[((0, 10), 'x'), ((20, 30), 'x')])
    preds = dict(a=[p((50, 60), .9), p((0, 10), .8), p((20, 30), .7)])
    assert np.allclose(ap_of(evaluate_detection(g2, preds, T, **th)),
                       (1 / 2 + 2 / 3) / 2)
    assert np.allclose(ap_of(evaluate_detection(g2, preds, T)), 2 / 3)
    # overlap must be strictly greater than the threshold
    assert ap_of(evaluate_detection(g, dict(a=[p((0, 5), .9)]), T, **th)) \
        == [0, 0]
    # ground-truth-first: A takes d1 (its best), B is left with d2 (0.375)
    g3 = gt(a=[((0, 10), 'x'), ((2, 12), 'x')])
    preds = dict(a=[p((2, 11.5), .9), p((0, 6.5), .8)])
    assert ap_of(evaluate_detection(g3, preds, (.5, ), **th)) == [.5]
    assert ap_of(evaluate_detection(g3, preds, (.5, ))) == [1]
    # equal overlaps (0.8): the ground truth takes the first free detection
    # in score order (MATLAB's max), d1, so B (overlap 0.5 with d2) is missed
    g5 = gt(a=[((0, 10), 'x'), ((-2, 8), 'x')])
    preds = dict(a=[p((0, 8), .9), p((2, 10), .8)])
    assert ap_of(evaluate_detection(g5, preds, (.6, ), **th)) == [.5]
    # tied scores: ordered by video name, whatever the file order
    g4 = gt(a=[((50, 60), 'y')], b=[((0, 10), 'x')])
    preds = dict(b=[p((0, 10), .5)], a=[p((0, 10), .5)])
    assert ap_of(evaluate_detection(g4, preds, T, **th)) == [.5, .5]
    assert ap_of(evaluate_detection(g4, preds, T)) == [1, 1]
    # intervals are put in order before the overlap
    assert ap_of(evaluate_detection(g, dict(a=[p((10, 0), .9)]), T, **th)) \
        == [1, 1]
    with pytest.warns(UserWarning, match='no "ambiguous"'):
        evaluate_detection(g2, {}, T, **th)


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_thumos14_protocol_against_reference():
    rng = np.random.default_rng(3)
    g, preds = synthetic(rng, degenerate=True)
    for i, info in enumerate(g.values()):
        info['ambiguous'] = [[float(s), float(s) + 4] for s in
                             rng.uniform(0, 90, i % 3)]
    for v in g:  # detections on the ambiguous regions
        preds.setdefault(v, []).extend(
            p(s, float(rng.random()), 'a') for s in g[v]['ambiguous'])
    thr = (0.1, 0.3, 0.5, 0.7)
    res = evaluate_detection(g, preds, thr, protocol='thumos14')
    assert sum(res['num_ambiguous_removed']) > 0
    assert_equal_to_reference(res, reference_th14(g, preds, thr))
    for qs in preds.values():  # the tool's tie order is defined: ties too
        for q in qs:
            q['score'] = round(q['score'], 1)
    res = evaluate_detection(g, preds, thr, protocol='thumos14')
    assert_equal_to_reference(res, reference_th14(g, preds, thr))


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_thumos14_protocol_on_real_annotations(shared_data, capsys):
    """THUMOS-14 test from the CSVs (212 videos, ambiguous regions kept,
    unclipped) and a results file made from it, with detections on the
    ambiguous regions: fast path == literal TH14eventdetpr to 1e-9."""
    root = osp.join(shared_data, 'thumos-14')
    db = convert_gtad_thumos(dict(test=osp.join(root, 'test_Annotation.csv')),
                             osp.join(root, 'thumos14_test_groundtruth.csv'),
                             exclude=())
    assert sum(len(i['ambiguous']) for i in db.values()) > 0
    preds = thumos_like_results(db, np.random.default_rng(4),
                                ambiguous_hits=True)
    thr = THUMOS_TIOU_THRESHOLDS
    res, t_fast = _timed(evaluate_detection, db, preds, thr,
                         protocol='thumos14')
    assert min(res['num_ambiguous_removed']) > 0
    ref, t_ref = _timed(reference_th14, db, preds, thr)
    gap = assert_equal_to_reference(res, ref)
    anet = evaluate_detection(db, preds, thr)
    assert abs(anet['average_mAP'] - res['average_mAP']) > 1e-3
    with capsys.disabled():
        print(f'\nTHUMOS-14 protocol: fast {t_fast:.2f} s, reference '
              f'{t_ref:.1f} s; max gap {gap:.1e}; average mAP '
              f'{res["average_mAP"]:.4f} (ActivityNet protocol '
              f'{anet["average_mAP"]:.4f})')


def test_load_activitynet_json_clip_option(tmp_path):
    path = str(tmp_path / 'gt.json')
    dump_activitynet_json(gt(a=[((90, 110), 'x'), ((5, 5), 'x')]), path)
    raw = load_activitynet_json(path, clip=False)
    assert [a['segment'] for a in raw['a']['annotations']] == [[90, 110],
                                                               [5, 5]]
    with pytest.warns(UserWarning, match='1 segment.*clipped, 1'):
        clipped = load_activitynet_json(path)  # training default
    assert [a['segment'] for a in clipped['a']['annotations']] == [[90, 100]]
    with pytest.raises(ValueError, match=r"subsets are \['validation'\]"):
        load_activitynet_json(path, 'test')


def sample(video_id, segs, scores, labels, offset=0.0):
    s = ActionDataSample()
    s.set_metainfo(dict(video_id=video_id, window_offset=offset))
    s.pred_instances = InstanceData(segments=torch.tensor(segs).float(),
                                    scores=torch.tensor(scores),
                                    labels=torch.tensor(labels))
    return s


def test_tal_metric_merges_windows(tmp_path):
    ann = tmp_path / 'gt.json'
    ann.write_text(json.dumps(dict(database=gt(
        a=[((0, 10), 'x'), ((40, 50), 'y')], b=[((5, 9), 'y')]))))
    out = tmp_path / 'sub.json'
    metric = TALMetric(str(ann), subset='validation', tiou_thresholds=T,
                       nms=dict(method='hard', iou_threshold=0.5),
                       out_file=str(out))
    metric.dataset_meta = dict(classes=('x', 'y'))
    # two overlapping windows of video a predict the same action twice
    metric.process({}, [sample('a', [[0, 10], [40, 50]], [.9, .8], [0, 1])])
    metric.process({}, [sample('a', [[0.2, 10]], [.7], [0], offset=0.0)])
    metric.process({}, [s.to_dict() for s in [sample('b', [[5, 9]], [.6],
                                                     [1])]])
    res = metric.evaluate(size=3)
    assert res['tal/average_mAP'] == 1.0
    sub = json.loads(out.read_text())['results']
    assert len(sub['a']) == 2 and sub['b'][0]['label'] == 'y'


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _metric_logger(name):
    logger = MMLogger.get_instance(name, log_level='WARNING')
    handler = _Records()
    logger.addHandler(handler)
    return handler


def test_tal_metric_official_ground_truth_protocol_and_logger(tmp_path):
    db = gt(a=[((90, 110), 'x')], b=[((5, 9), 'y')], c=[((1, 2), 'y')])
    db['b']['ambiguous'] = [[50, 60]]
    ann = tmp_path / 'gt.json'
    ann.write_text(json.dumps(dict(database=db)))
    samples = [sample('a', [[90, 120]], [.9], [0]),
               sample('b', [[5, 9], [52, 58]], [.5, .9], [1, 1]),
               sample('zz', [[1, 2]], [.4], [2])]

    def run(**kwargs):
        metric = TALMetric(str(ann), subset='validation', nms=None,
                           **kwargs)
        metric.dataset_meta = dict(classes=('x', 'y', 'q'))
        for s in samples:
            metric.process({}, [s])
        return metric.evaluate(size=len(samples))

    records = _metric_logger('test_tal_metric_official')
    res = run(tiou_thresholds=T)
    # unclipped: (90, 120) matches (90, 110) with tIoU 2/3, although the
    # video ends at 100; y: the FP on the ambiguous region ranks first, c is
    # missed
    assert res['tal/mAP@0.50'] == pytest.approx((1 + 0.5 * 0.5) / 2)
    text = '\n'.join(records.messages)
    assert "'q' (1)" in text  # the unknown label, named
    assert "'zz'" in text and 'not in the ground truth' in text
    assert text.count('not in the ground truth') == 1  # said once
    assert "have no prediction" in text and "'c'" in text
    # clipping on demand (not the official metric): (90, 100) vs (90, 120)
    with pytest.warns(UserWarning, match='1 segment.*clipped'):
        clipped = run(tiou_thresholds=T, clip_ground_truth=True)
    assert clipped['tal/mAP@0.50'] == pytest.approx((0 + 0.25) / 2)
    # THUMOS-14 protocol: the ambiguous detection is dropped, its default
    # thresholds are 0.3:0.1:0.7
    th = run(protocol='thumos14')
    assert set(th) == {f'tal/mAP@{t:.2f}' for t in
                       THUMOS_TIOU_THRESHOLDS} | {'tal/average_mAP'}
    assert th['tal/mAP@0.50'] == pytest.approx((1 + 0.5) / 2)


# --------------------------------------------------------------------------
# tools/eval_detection.py
# --------------------------------------------------------------------------
@pytest.fixture
def cli():
    sys.path.insert(0, TOOLS)
    import eval_detection
    yield eval_detection
    sys.path.remove(TOOLS)


def _files(tmp_path, database, results):
    g, r = str(tmp_path / 'gt.json'), str(tmp_path / 'res.json')
    dump_activitynet_json(database, g)
    with open(r, 'w') as f:
        json.dump(dict(version='x', results=results, external_data={}), f)
    return g, r


def _thumos_like(tmp_path):
    db = gt(video_test_1=[((0, 10), 'x')], video_test_2=[((5, 9), 'x')],
            video_validation_1=[((0, 10), 'x')])
    db['video_test_1']['subset'] = db['video_test_2']['subset'] = 'test'
    return db


def test_cli_help_shows_defaults(cli, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(['--help'])
    assert err.value.code == 0
    out = ' '.join(capsys.readouterr().out.split())
    assert '0.5 0.55 0.6 0.65 0.7 0.75 0.8 0.85 0.9 0.95' in out
    assert '0.3 0.4 0.5 0.6 0.7' in out and '--thumos-thresholds' in out
    assert 'default: validation' in out and 'default: activitynet' in out


def test_cli_wrong_subset_stops(cli, tmp_path):
    db = _thumos_like(tmp_path)
    g, r = _files(tmp_path, db, dict(video_test_1=[p((0, 10), .9)]))
    with pytest.raises(SystemExit) as err:  # default --subset validation
        cli.main([g, r])
    msg = str(err.value)
    assert "subset 'validation'" in msg and "'test' (2 videos, 1 predicted)"\
        in msg and '--subset' in msg
    db['video_validation_1']['subset'] = 'train'  # no such subset at all
    g, r = _files(tmp_path, db, dict(video_test_1=[p((0, 10), .9)]))
    with pytest.raises(SystemExit, match=r"'train' \(1 videos, 0 predicted"):
        cli.main([g, r])
    res = cli.main([g, r, '--subset', 'test', '--thumos-thresholds'])
    assert res['tiou_thresholds'] == list(THUMOS_TIOU_THRESHOLDS)
    assert res['average_mAP'] == 0.5
    with pytest.raises(SystemExit, match='none of the 0 predicted'):
        _, r = _files(tmp_path, db, {})
        cli.main([g, r, '--subset', 'test'])


def test_cli_v_prefix(cli, tmp_path, capsys):
    db = gt(abc=[((0, 10), 'x')], d=[((0, 10), 'x')])
    g, r = _files(tmp_path, db, {'v_abc': [p((0, 10), .9)],
                                 'v_d': [p((0, 10), .8)]})
    with pytest.raises(SystemExit) as err:
        cli.main([g, r])
    assert "stripped (e.g. 'v_abc' -> 'abc')" in str(err.value)
    assert '--strip-prefix v_' in str(err.value)
    assert cli.main([g, r, '--strip-prefix', 'v_'])['average_mAP'] == 1.0
    # partly matching: scored, with the hint as a warning
    g, r = _files(tmp_path, db, {'abc': [p((0, 10), .9)],
                                 'v_d': [p((0, 10), .8)]})
    capsys.readouterr()
    assert cli.main([g, r])['average_mAP'] == 0.5
    err = capsys.readouterr().err
    assert '1 of 2 predicted videos are not in subset' in err
    assert '--strip-prefix v_' in err
    # the ground truth has the prefix (BSN style), the results do not
    db = gt(v_abc=[((0, 10), 'x')])
    g, r = _files(tmp_path, db, {'abc': [p((0, 10), .9)]})
    with pytest.raises(SystemExit, match='--add-prefix v_'):
        cli.main([g, r])
    assert cli.main([g, r, '--add-prefix', 'v_'])['average_mAP'] == 1.0


def test_cli_warns_outside_subset_and_unknown_labels(cli, tmp_path, capsys):
    db = gt(a=[((0, 10), 'x')], b=[((0, 10), 'x')])
    db['b']['subset'] = 'training'
    results = dict(a=[p((0, 10), .9), p((0, 10), .8, 'Pogo'),
                      p((1, 10), .8, 'Pogo'), p((0, 10), .7, 'Zorb')],
                   b=[p((0, 10), .95)], c=[p((0, 10), .96)])
    g, r = _files(tmp_path, db, results)
    res = cli.main([g, r])
    err = capsys.readouterr().err
    assert ('2 of 3 predicted videos are not in subset \'validation\'; '
            'their 2 predictions count as false positives') in err
    assert 'training (1)' in err and 'not in the ground truth (1)' in err
    assert "'b', 'c'" in err
    assert "3 prediction(s) with a label that is not a ground-truth class " \
        "were ignored: 'Pogo' (2), 'Zorb' (1)" in err
    assert res['per_class_AP']['x'] == [1 / 3] * 10


def test_cli_thumos14_protocol(cli, tmp_path, capsys):
    db = _thumos_like(tmp_path)
    db['video_test_1']['ambiguous'] = [[50, 60]]
    g, r = _files(tmp_path, db, dict(video_test_1=[p((51, 59), .9),
                                                   p((0, 10), .5)]))
    out = str(tmp_path / 'm.json')
    res = cli.main([g, r, '--protocol', 'thumos14', '--out', out])
    assert res['tiou_thresholds'] == list(THUMOS_TIOU_THRESHOLDS)
    assert res['mAP'] == [.5] * 5  # one of two GTs found, no FP
    saved = json.load(open(out))
    assert saved['protocol'] == 'thumos14' and saved['subset'] == 'test'
    assert "thumos14 protocol, subset 'test'" in capsys.readouterr().out
    anet = cli.main([g, r, '--subset', 'test', '--thumos-thresholds'])
    assert anet['mAP'] == [.25] * 5


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_eval_speed_on_shared_files(shared_data, tmp_path, capsys, cli):
    """The CLI on ActivityNet-1.3 validation (unclipped ground truth file)
    and the official sample results; also with --clip-gt, for the record."""
    val, preds = _anet_validation(shared_data)
    gt_file = str(tmp_path / 'anet.json')
    dump_activitynet_json(val, gt_file)
    pred_file = osp.join(shared_data, 'activitynet-1.3',
                         'sample_detection_prediction.json')
    out = str(tmp_path / 'res.json')
    start = time.perf_counter()
    res = cli.main([gt_file, pred_file, '--out', out])
    elapsed = time.perf_counter() - start
    clipped = cli.main([gt_file, pred_file, '--clip-gt'])
    err = capsys.readouterr().err
    assert '198 of 4926 predicted videos are not in subset' in err
    with capsys.disabled():
        print(f'\nANet-1.3 val eval (read + evaluate): {elapsed:.3f} s, '
              f'average mAP {res["average_mAP"]:.6f} (unclipped, official) '
              f'vs {clipped["average_mAP"]:.6f} (--clip-gt)')
    saved = json.load(open(out))
    assert set(saved) == {'tiou_thresholds', 'mAP', 'average_mAP',
                          'per_class_AP', 'protocol', 'subset', 'clip_gt'}
    assert saved['protocol'] == 'activitynet' and not saved['clip_gt']
    assert len(saved['per_class_AP']) == 200
    assert 0 <= saved['average_mAP'] <= 1
    assert saved['average_mAP'] == pytest.approx(
        evaluate_detection(val, preds)['average_mAP'], abs=1e-12)
    assert saved['average_mAP'] != clipped['average_mAP']


def test_merge_drops_segments_clipping_left_empty():
    """A detection wholly outside its video is clipped to zero length and
    left out (``drop_empty``, default); OpenTAD keeps it."""
    import torch

    from re2tal_mm.evaluation import TALMetric
    segs = torch.tensor([[1., 2.], [-3., -1.], [11., 12.], [9., 11.]])
    scores, labels = torch.tensor([.9, .8, .7, .6]), torch.zeros(4).long()
    out = TALMetric(nms=None).merge_video(segs, scores, labels, 10.)
    assert out[0].tolist() == [[1., 2.], [9., 10.]]
    assert out[1].tolist() == pytest.approx([.9, .6])
    kept = TALMetric(nms=None, drop_empty=False).merge_video(
        segs, scores, labels, 10.)
    assert kept[0].tolist() == [[1., 2.], [0., 0.], [10., 10.], [9., 10.]]
    unclipped = TALMetric(nms=None, clip=None).merge_video(
        segs, scores, labels, 10.)
    assert torch.equal(unclipped[0], segs)

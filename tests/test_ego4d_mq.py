"""Ego4D Moment Queries: converter on files in the release's layout, and
Recall@kx equal to a literal port of the reference rule."""
import json
import os.path as osp
import sys

import numpy as np
import pytest

from re2tal_mm.datasets.ego4d import convert_ego4d_mq
from re2tal_mm.evaluation.recall import recall_metrics, topkx_recall
from tests.conftest import REPO

TOOLS = osp.join(REPO, 'tools')
TOOLS_DATA = osp.join(REPO, 'tools', 'data')
THR = np.linspace(0.1, 0.5, 5)


def moments(split, clips):
    """A ``moments_<split>.json`` with ``clips``: (video, clip, start, end,
    [[(s, e, label, primary)] per annotator])."""
    videos = {}
    for video, clip, s, e, annotators in clips:
        v = videos.setdefault(video, dict(video_uid=video, split=split,
                                          clips=[]))
        v['clips'].append(dict(
            clip_uid=clip, video_start_sec=s, video_end_sec=e,
            annotations=[dict(annotator_uid=f'a{i}', labels=[
                dict(start_time=a, end_time=b, label=lb, primary=pr,
                     video_start_time=s + a, video_end_time=s + b)
                for a, b, lb, pr in labels])
                for i, labels in enumerate(annotators)]))
    return dict(version='v2', videos=list(videos.values()))


def write_files(tmp_path):
    train = moments('train', [
        ('vA', 'c1', 0.0, 480.0, [[(1.0, 5.5, 'cut', True),
                                   (3.0, 9.0, 'wash', False)],
                                  [(1.2, 5.0, 'cut', True)]]),
        ('vA', 'c2', 480.0, 960.0, [[(10.0, 20.0, 'stir', True)]]),
    ])
    val = moments('val', [('vB', 'c3', 100.0, 580.25,
                           [[(0.5, 30.0, 'wash', True)]])])
    paths = []
    for name, data in (('moments_train.json', train),
                       ('moments_val.json', val)):
        (tmp_path / name).write_text(json.dumps(data))
        paths.append(str(tmp_path / name))
    return paths


def test_converter_layout(tmp_path, capsys):
    train, val = write_files(tmp_path)
    db, classes = convert_ego4d_mq(dict(train=train, validation=val))
    assert list(db) == ['c1', 'c2', 'c3']  # one entry per clip
    assert classes == ['cut', 'stir', 'wash']
    c1 = db['c1']
    assert (c1['subset'], c1['duration'], c1['video_uid']) == (
        'train', 480.0, 'vA')
    # primary labels of both annotators, clip-relative seconds
    assert [(a['segment'], a['label']) for a in c1['annotations']] == [
        ([1.0, 5.5], 'cut'), ([1.2, 5.0], 'cut')]
    assert db['c2']['clip_start_sec'] == 480.0
    assert db['c3']['duration'] == 480.25
    out = capsys.readouterr().out
    assert ('train: read moments_train.json: 1 videos, 2 clips (one entry '
            'each), 3 primary segments, 2 classes present') in out
    assert 'dropped: 1 non-primary label(s)' in out
    with pytest.raises(ValueError, match="'cut'"):
        convert_ego4d_mq(dict(train=train), classes=['stir'])
    sys.path.insert(0, TOOLS_DATA)
    try:
        import convert_ego4d_mq as tool
        path = tool.main([str(tmp_path / 'out' / 'mq.json'), '--train',
                          train, '--val', val])
    finally:
        sys.path.remove(TOOLS_DATA)
    data = json.load(open(path))
    assert data['classes'] == classes and len(data['database']) == 3


# --------------------------------------------------------------------------
# Literal port of compute_topkx_recall_detection (opentad/evaluations/
# mAP.py, the Ego4D MQ rule) on lists, loop for loop, with
# wrapper_compute_topkx_recall's per-class split and the mean over classes
# --------------------------------------------------------------------------
def ref_segment_iou(target_segment, candidate_segments):
    tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
    tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
    segments_intersection = (tt2 - tt1).clip(0)
    segments_union = (candidate_segments[:, 1] - candidate_segments[:, 0]) \
        + (target_segment[1] - target_segment[0]) - segments_intersection
    return segments_intersection.astype(float) / segments_union.clip(1e-8)


def ref_compute_topkx_recall(ground_truth, prediction, tiou_thresholds,
                             top_k):
    """ground_truth: rows (video, s, e); prediction: (video, s, e, score)."""
    if not prediction:
        return np.zeros((len(tiou_thresholds), len(top_k)))
    tp = np.zeros((len(tiou_thresholds), len(top_k)))
    n_gts = 0
    gt_by, pred_by = {}, {}
    for r in ground_truth:
        gt_by.setdefault(r[0], []).append(r)
    for r in prediction:
        pred_by.setdefault(r[0], []).append(r)
    for videoid in sorted(gt_by):  # groupby: sorted keys
        this_gt = gt_by[videoid]
        n_gts += len(this_gt)
        if videoid not in pred_by:
            continue
        this_pred = pred_by[videoid]
        scores = np.array([r[3] for r in this_pred])
        score_sort_idx = scores.argsort()[::-1]
        top_kx_idx = score_sort_idx[:max(top_k) * len(this_gt)]
        gt_arr = np.array([r[1:3] for r in this_gt])
        tiou_arr = np.stack([ref_segment_iou(np.array(this_pred[i][1:3]),
                                             gt_arr) for i in top_kx_idx])
        for tidx, tiou_thr in enumerate(tiou_thresholds):
            for kidx, k in enumerate(top_k):
                tiou = tiou_arr[:k * len(this_gt)]
                tp[tidx, kidx] += ((tiou >= tiou_thr).sum(axis=0) > 0).sum()
    return tp / n_gts


def ref_recall(ground_truth, predictions, thresholds, top_k):
    activity_index = {}
    gt_rows, pred_rows = [], []
    for vid, v in ground_truth.items():
        for a in v['annotations']:
            c = activity_index.setdefault(a['label'], len(activity_index))
            gt_rows.append((vid, *a['segment'], c))
    for vid, ps in predictions.items():
        for p in ps:
            c = activity_index.get(p['label'], len(activity_index))
            pred_rows.append((vid, *p['segment'], p['score'], c))
    out = {}
    for label, c in activity_index.items():
        out[label] = ref_compute_topkx_recall(
            [r[:3] for r in gt_rows if r[3] == c],
            [r[:4] for r in pred_rows if r[4] == c], thresholds, top_k)
    return out


def synthetic(rng, n_videos=40, labels=('a', 'b', 'c', 'd')):
    gt, preds = {}, {}
    for v in range(n_videos):
        anns = []
        for _ in range(rng.integers(1, 6)):
            s = float(rng.uniform(0, 400))
            anns.append(dict(segment=[s, s + float(rng.uniform(1, 30))],
                             label=str(rng.choice(labels[:3]))))
        gt[f'clip{v}'] = dict(annotations=anns)
        qs = []
        for a in anns * 3:
            j = rng.normal(0, 4, 2)
            qs.append(dict(segment=[a['segment'][0] + j[0],
                                    a['segment'][1] + j[1] + 0.1],
                           score=float(rng.random()),
                           label=a['label'] if rng.random() < .7 else
                           str(rng.choice(labels))))
        preds[f'clip{v}' if v % 7 else f'other{v}'] = qs
    return gt, preds


def test_recall_equals_reference():
    gt, preds = synthetic(np.random.default_rng(0))
    res = topkx_recall(gt, preds, THR, (1, 5))
    ref = ref_recall(gt, preds, THR, (1, 5))
    gap = max(np.abs(np.asarray(res['per_class_recall'][c]) - r).max()
              for c, r in ref.items())
    mean = np.mean(list(ref.values()), 0)
    assert gap <= 1e-12
    assert np.abs(np.asarray(res['recall']) - mean).max() <= 1e-12
    assert 0 < mean[2, 0] < mean[2, 1] <= 1  # R@1x < R@5x at 0.3
    names = recall_metrics(res)
    assert names['recall@0.30@1x'] == res['recall'][2][0]
    assert names['recall@0.50@5x'] == res['recall'][4][1]
    # a class without predictions: recall 0, as in the reference
    res2 = topkx_recall(dict(v=dict(annotations=[
        dict(segment=[0, 1], label='z')])), {}, THR)
    assert res2['per_class_recall']['z'] == [[0.0, 0.0]] * 5


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_cli_ego4d_protocol(tmp_path, capsys):
    gt, preds = synthetic(np.random.default_rng(1))
    for info in gt.values():
        info['subset'] = 'validation'
    g, r = tmp_path / 'gt.json', tmp_path / 'res.json'
    g.write_text(json.dumps(dict(database=gt)))
    r.write_text(json.dumps(dict(results=preds)))
    sys.path.insert(0, TOOLS)
    try:
        import eval_detection
        out = tmp_path / 'out.json'
        res = eval_detection.main([str(g), str(r), '--protocol', 'ego4d-mq',
                                   '--out', str(out)])
    finally:
        sys.path.remove(TOOLS)
    assert res['tiou_thresholds'] == THR.tolist()
    ref = np.mean(list(ref_recall(gt, preds, THR, (1, 5)).values()), 0)
    saved = json.load(open(out))['recall']
    assert abs(saved['recall@0.50@1x'] - ref[4, 0]) <= 1e-12
    assert abs(saved['recall@0.30@5x'] - ref[2, 1]) <= 1e-12
    assert 'recall@0.50@1x' in capsys.readouterr().out


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_tal_metric_reports_recall(tmp_path):
    from re2tal_mm.evaluation import TALMetric
    gt = dict(c1=dict(subset='validation', duration=100.0, annotations=[
        dict(segment=[10.0, 20.0], label='cut'),
        dict(segment=[50.0, 60.0], label='wash')]))
    g = tmp_path / 'gt.json'
    g.write_text(json.dumps(dict(database=gt)))
    result = dict(video_id='c1', duration=100.0,
                  segments=np.array([[11.0, 21.0], [0.0, 5.0], [50, 58]]),
                  scores=np.array([0.9, 0.95, 0.5]),
                  labels=np.array([0, 1, 1]))
    metric = TALMetric(ann_file=str(g), protocol='ego4d-mq', nms=None,
                       class_names=['cut', 'wash'])
    m = metric.compute_metrics([result])
    assert m['recall@0.50@1x'] == 0.5  # wash's top-1 is the wrong one
    assert m['recall@0.50@5x'] == 1.0
    assert 'mAP@0.10' in m
    assert not any(k.startswith('recall') for k in TALMetric(
        ann_file=str(g), nms=None, class_names=['cut', 'wash'],
        protocol='charades').compute_metrics([result]))

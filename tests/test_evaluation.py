import json
import os.path as osp
import time

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmaction.structures import ActionDataSample
from re2tal_mm.evaluation import TALMetric, evaluate_detection
from re2tal_mm.evaluation.functional import THUMOS_TIOU_THRESHOLDS

T = (0.5, 0.75)


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
    # tie: the file order decides (stable sort)
    fp_first = dict(a=[p((50, 60), .5), p((0, 10), .5)])
    tp_first = dict(a=[p((0, 10), .5), p((50, 60), .5)])
    assert ap_of(evaluate_detection(g, fp_first, T)) == [.5, .5]
    assert ap_of(evaluate_detection(g, tp_first, T)) == [1, 1]
    # a prediction on a video without ground truth is a false positive
    res = evaluate_detection(g, dict(z=[p((0, 10), .9)], a=[p((0, 10), .5)]),
                             T)
    assert ap_of(res) == [.5, .5]
    # class without predictions: AP 0, counted in the mean
    g3 = gt(a=[((0, 10), 'x'), ((20, 30), 'y')])
    with pytest.warns(UserWarning, match='1 prediction'):
        res = evaluate_detection(g3, dict(a=[p((0, 10), .9),
                                             p((0, 10), .9, 'q')]), T)
    assert res['per_class_AP']['y'] == [0, 0]
    assert res['mAP'] == [.5, .5] and res['num_ignored'] == 1
    # threshold: tIoU 0.6 counts at 0.5, not at 0.75
    res = evaluate_detection(g, dict(a=[p((0, 6), .9)]), T)
    assert ap_of(res) == [1, 0] and res['average_mAP'] == .5


def reference_ap(ground_truth, predictions, thresholds):
    """Slow, loop-by-loop port of the ActivityNet evaluator."""
    classes = sorted({a['label'] for v in ground_truth.values()
                      for a in v['annotations']})
    out = {}
    for c in classes:
        gts = [(v, a['segment']) for v, i in ground_truth.items()
               for a in i['annotations'] if a['label'] == c]
        preds = [(v, q['segment'], q['score'])
                 for v, qs in predictions.items() for q in qs
                 if q['label'] == c]
        preds = sorted(preds, key=lambda x: -x[2])
        aps = []
        for t in thresholds:
            used = [False] * len(gts)
            tp = []
            for v, s, _ in preds:
                best, best_j = -1, -1
                for j, (gv, gs) in enumerate(gts):
                    if gv != v or used[j]:
                        continue
                    inter = max(0, min(s[1], gs[1]) - max(s[0], gs[0]))
                    iou = inter / (s[1] - s[0] + gs[1] - gs[0] - inter)
                    if iou >= t and iou > best:
                        best, best_j = iou, j
                if best_j >= 0:
                    used[best_j] = True
                tp.append(best_j >= 0)
            ap, max_prec, n_tp = 0.0, 0.0, 0
            precs, recs = [], []
            for k, hit in enumerate(tp):
                n_tp += hit
                precs.append(n_tp / (k + 1))
                recs.append(n_tp / len(gts))
            for k in range(len(tp) - 1, -1, -1):
                max_prec = max(max_prec, precs[k])
                prev = recs[k - 1] if k else 0.0
                ap += (recs[k] - prev) * max_prec
            aps.append(ap)
        out[c] = aps
    return out


def test_against_slow_reference():
    rng = np.random.default_rng(0)
    labels = ['a', 'b', 'c']
    g, preds = {}, {}
    for v in range(30):
        anns = []
        for _ in range(rng.integers(0, 5)):
            s = rng.uniform(0, 80)
            anns.append(((s, s + rng.uniform(1, 20)), rng.choice(labels)))
        g.update(gt(**{f'v{v}': anns}))
        qs = []
        for (s, e), lb in anns * 2:
            j = rng.normal(0, 2, 2)
            qs.append(p((s + j[0], e + j[1] + 0.1), float(rng.random()),
                        lb if rng.random() < .8 else rng.choice(labels)))
        for _ in range(rng.integers(0, 4)):
            s = rng.uniform(0, 80)
            qs.append(p((s, s + 5), float(rng.random()), rng.choice(labels)))
        preds[f'v{v}' if v < 28 else f'extra{v}'] = qs
    res = evaluate_detection(g, preds, THUMOS_TIOU_THRESHOLDS)
    ref = reference_ap(g, preds, THUMOS_TIOU_THRESHOLDS)
    for c in ref:
        assert np.allclose(res['per_class_AP'][c], ref[c]), c
    assert np.allclose(res['mAP'], np.mean(list(ref.values()), 0))


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


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_eval_speed_on_shared_files(shared_data, tmp_path, capsys):
    from re2tal_mm.datasets.annotations import (convert_bsn_activitynet,
                                                dump_activitynet_json)
    import sys
    sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'tools'))
    import eval_detection
    root = osp.join(shared_data, 'activitynet-1.3')
    gt_file = str(tmp_path / 'anet.json')
    dump_activitynet_json(convert_bsn_activitynet(
        osp.join(root, 'anet_anno_action.json'),
        osp.join(root, 'video_info_new.csv')), gt_file)
    out = str(tmp_path / 'res.json')
    start = time.perf_counter()
    res = eval_detection.main([gt_file, osp.join(
        root, 'sample_detection_prediction.json'), '--out', out])
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f'\nANet-1.3 val eval (read + evaluate): {elapsed:.3f} s, '
              f'average mAP {res["average_mAP"]:.4f}')
    saved = json.load(open(out))
    assert set(saved) == {'tiou_thresholds', 'mAP', 'average_mAP',
                          'per_class_AP'}
    assert len(saved['per_class_AP']) == 200
    assert 0 <= saved['average_mAP'] <= 1

"""Literal port of the EPIC-Kitchens-100 action detection evaluator.

``EvaluationCode/evaluate_detection_json_ek100.py`` of
github.com/epic-kitchens/C2-Action-Detection (newest version: predictions
whose label is not a ground-truth label are removed before the labels are
mapped to class indices), written from its source, loop for loop, on lists
of rows instead of DataFrames (as the ActivityNet port of
tests/test_evaluation.py): ``load_gt_segmentations``,
``load_predicted_segmentations``, ``ANETdetection`` (``__init__``,
``wrapper_compute_average_precision``, ``evaluate``),
``compute_average_precision_detection``, ``segment_iou`` and
``interpolated_prec_rec``. Left out: the submission's validation (version,
challenge, supervision levels), the ``correct_preds`` bookkeeping (it does
not change the AP), joblib (classes are evaluated in turn), and
``np.float`` (removed from numpy; ``float``).
"""
import csv

import numpy as np

_MINUTES_TO_SECONDS = 60
_HOURS_TO_SECONDS = 60 * 60


def timestamp_to_seconds(timestamp):
    hours, minutes, seconds = map(float, timestamp.split(':'))
    total_seconds = hours * _HOURS_TO_SECONDS + \
        minutes * _MINUTES_TO_SECONDS + seconds
    return total_seconds


def read_annotations(csv_path):
    """The annotation DataFrame's columns used, row by row (file order)."""
    with open(csv_path, encoding='utf-8') as f:
        return list(csv.DictReader(f))


def load_gt_segmentations(annotations, num_nouns=300, label='action'):
    """Rows ``(video-id, t-start, t-end, label)``."""
    rows = []
    for a in annotations:
        verb, noun = int(a['verb_class']), int(a['noun_class'])
        if label == 'verb':
            lb = verb
        elif label == 'noun':
            lb = noun
        elif label == 'action':
            lb = verb * num_nouns + noun
        rows.append([a['video_id'],
                     timestamp_to_seconds(a['start_timestamp']),
                     timestamp_to_seconds(a['stop_timestamp']), lb])
    return rows


def load_predicted_segmentations(submission, num_nouns=300, label='action'):
    """Rows ``(video-id, t-start, t-end, score, label)``."""
    results = submission['results']
    rows = []
    for k, v in results.items():
        for vv in v:
            verb, noun = int(vv['verb']), int(vv['noun'])
            action = int(vv['action'].split(',')[0]) * num_nouns + \
                int(vv['action'].split(',')[1])
            lb = dict(verb=verb, noun=noun, action=action)[label]
            rows.append([k, float(vv['segment'][0]), float(vv['segment'][1]),
                         float(vv['score']), lb])
    return rows


def segment_iou(target_segment, candidate_segments):
    tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
    tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
    segments_intersection = (tt2 - tt1).clip(0)
    segments_union = (candidate_segments[:, 1] - candidate_segments[:, 0]) \
        + (target_segment[1] - target_segment[0]) - segments_intersection
    with np.errstate(divide='ignore', invalid='ignore'):
        tIoU = segments_intersection.astype(float) / segments_union
    return tIoU


def interpolated_prec_rec(prec, rec):
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    ap = np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])
    return ap


def compute_average_precision_detection(
        ground_truth, prediction,
        tiou_thresholds=np.linspace(0.1, 0.5, 5)):
    """``ground_truth``: rows (video-id, t-start, t-end) of one class in
    file order; ``prediction``: rows (video-id, t-start, t-end, score)."""
    ap = np.zeros(len(tiou_thresholds))
    if not prediction:  # prediction.empty
        return ap
    npos = float(len(ground_truth))
    lock_gt = np.ones((len(tiou_thresholds), len(ground_truth))) * -1
    scores = np.array([row[3] for row in prediction])
    sort_idx = scores.argsort()[::-1]
    prediction = [prediction[i] for i in sort_idx]
    tp = np.zeros((len(tiou_thresholds), len(prediction)))
    fp = np.zeros((len(tiou_thresholds), len(prediction)))
    ground_truth_gbvn = {}  # groupby('video-id'): the 'index' column
    for j, row in enumerate(ground_truth):
        ground_truth_gbvn.setdefault(row[0], []).append(j)
    for idx, this_pred in enumerate(prediction):
        if this_pred[0] not in ground_truth_gbvn:  # get_group raises
            fp[:, idx] = 1
            continue
        this_gt = ground_truth_gbvn[this_pred[0]]
        tiou_arr = segment_iou(
            np.array(this_pred[1:3]),
            np.array([ground_truth[j][1:3] for j in this_gt]))
        tiou_sorted_idx = tiou_arr.argsort()[::-1]
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
        ap[tidx] = interpolated_prec_rec(precision_cumsum[tidx, :],
                                         recall_cumsum[tidx, :])
    return ap


class ANETdetection:
    """``ANETdetection`` of the EK100 evaluator (newest version)."""

    def __init__(self, annotations, submission,
                 tiou_thresholds=np.linspace(0.1, 0.5, 5),
                 label='action', num_nouns=300):
        self.tiou_thresholds = tiou_thresholds
        self.ground_truth = load_gt_segmentations(annotations, label=label,
                                                  num_nouns=num_nouns)
        self.prediction = load_predicted_segmentations(
            submission, label=label, num_nouns=num_nouns)
        # Remove predictions of non-existing labels (the newest version)
        gt_labels = {row[3] for row in self.ground_truth}
        self.prediction = [r for r in self.prediction if r[4] in gt_labels]
        self.activity_index = {j: i for i, j in enumerate(sorted(gt_labels))}
        for row in self.ground_truth:
            row[3] = self.activity_index[row[3]]
        for row in self.prediction:
            row[4] = self.activity_index[row[4]]

    def wrapper_compute_average_precision(self):
        ap = np.zeros((len(self.tiou_thresholds), len(self.activity_index)))
        # groupby('label'): rows of each label in file order
        ground_truth_by_label, prediction_by_label = {}, {}
        for r in self.ground_truth:
            ground_truth_by_label.setdefault(r[3], []).append(r[:3])
        for r in self.prediction:
            prediction_by_label.setdefault(r[4], []).append(r[:4])
        for label_name, cidx in self.activity_index.items():
            ap[:, cidx] = compute_average_precision_detection(
                ground_truth_by_label[cidx],
                prediction_by_label.get(cidx, []),  # empty DataFrame
                self.tiou_thresholds)
        return ap

    def evaluate(self):
        self.ap = self.wrapper_compute_average_precision()
        self.mAP = self.ap.mean(axis=1)
        self.average_mAP = self.mAP.mean()
        return self.mAP, self.average_mAP

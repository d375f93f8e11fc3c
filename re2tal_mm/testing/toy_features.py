"""Toy feature videos with planted segments, shared by the unit tests and
``tools/analysis/compare_heads.py``.

A video is ``C`` channels of Gaussian noise over ``length`` steps of
``STEP`` s, with segments of ``K`` classes planted by adding each class's
prototype vector over the segment's steps. :func:`window_sample` cuts a
window as the feature pipeline packs it, :func:`predict_video` runs a
localizer over a whole video in sliding windows merged as :class:`TALMetric`
merges, and :func:`average_precision` is a brute-force mAP to compare with.
"""
import numpy as np
import torch
from mmengine.structures import InstanceData

from re2tal_mm.evaluation import TALMetric
from re2tal_mm.structures import pairwise_tiou

from mmaction.structures import ActionDataSample

C, K, WIN, FPS, FSTRIDE = 16, 3, 128, 10.0, 4  # one step = 0.4 s
STEP = FSTRIDE / FPS


def make_video(rng, length, protos):
    """Features (C, length), planted segments (seconds) and labels."""
    x = rng.normal(0, 0.6, (C, length)).astype(np.float32)
    segs, labels, t = [], [], int(rng.integers(2, 10))
    while True:
        n = int(rng.integers(4, 33))
        if t + n + 2 > length:
            break
        k = int(rng.integers(K))
        x[:, t:t + n] += protos[k][:, None]
        # features stand for the middle of their clip (grid centre 0.5)
        segs.append([t * STEP, (t + n) * STEP])
        labels.append(k)
        t += n + int(rng.integers(3, 20))
    return x, np.array(segs, np.float32).reshape(-1, 2), np.array(labels)


def window_sample(vid, x, segs, labels, start, length, with_gt=True,
                  fps=FPS, stride=FSTRIDE, center=0.5, duration=None):
    """Steps ``start:start + length`` of features ``x`` on the grid ``fps``,
    ``stride``, ``center`` (the video lasts ``duration`` s, default all of
    ``x``), with the segments that keep half their length in it."""
    step = stride / fps
    feat = torch.from_numpy(x[:, start:start + length].copy())
    s = ActionDataSample()
    s.set_metainfo(dict(
        video_id=vid, duration=duration or x.shape[1] * step, fps=fps,
        grid_stride=stride, grid_center=center, window_offset=start * step,
        window_duration=feat.shape[1] * step, valid_steps=feat.shape[1]))
    if with_gt:
        lo, hi = start * step, (start + feat.shape[1]) * step
        clipped = np.clip(segs, lo, hi)
        kept = clipped[:, 1] - clipped[:, 0]
        keep = kept >= 0.5 * (segs[:, 1] - segs[:, 0])
        gt = InstanceData()
        gt.segments = torch.from_numpy(clipped[keep])
        gt.labels = torch.from_numpy(labels[keep]).long()
        s.gt_instances = gt
    return feat, s


def average_precision(preds, gts, thr=0.5):
    """Reference mAP@thr; ``preds``: (video, seg, label, score) tuples,
    ``gts``: (video, seg, label) tuples."""
    aps = []
    for k in range(K):
        g = [(v, s) for v, s, lab in gts if lab == k]
        p = sorted([(sc, v, s) for v, s, lab, sc in preds if lab == k],
                   key=lambda r: -r[0])
        used, tp = set(), []
        for _, v, s in p:
            best, bi = thr, None
            for gi, (gv, gs) in enumerate(g):
                if gv != v or gi in used:
                    continue
                iou = pairwise_tiou(np.array([s]), np.array([gs]))[0, 0]
                if iou >= best:
                    best, bi = iou, gi
            tp.append(bi is not None)
            if bi is not None:
                used.add(bi)
        tp = np.array(tp, float)
        rec = np.cumsum(tp) / max(len(g), 1)
        prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
        mprec = np.concatenate([[0], prec, [0]])
        mrec = np.concatenate([[0], rec, [1]])
        for i in range(len(mprec) - 2, -1, -1):
            mprec[i] = max(mprec[i], mprec[i + 1])
        idx = np.where(mrec[1:] != mrec[:-1])[0]
        aps.append(float(np.sum((mrec[idx + 1] - mrec[idx]) * mprec[idx + 1])))
    return float(np.mean(aps))


def predict_video(model, vid, x, segs, labels, win, hop):
    """Sliding windows over a whole video, merged as TALMetric merges."""
    starts = list(range(0, max(x.shape[1] - win, 0) + 1, hop))
    if starts[-1] + win < x.shape[1]:
        starts.append(x.shape[1] - win)
    batch = [window_sample(vid, x, segs, labels, s, win, False)
             for s in starts]
    # windows are not NMSed on their own: one NMS over all of them below
    nms, model.post_processor.nms = model.post_processor.nms, None
    try:
        with torch.no_grad():
            data = model.data_preprocessor(
                dict(inputs=[b[0] for b in batch],
                     data_samples=[b[1] for b in batch]), False)
            out = model(**data, mode='predict')
    finally:
        model.post_processor.nms = nms
    seg = torch.cat([o.pred_instances.segments for o in out])
    sc = torch.cat([o.pred_instances.scores for o in out])
    lab = torch.cat([o.pred_instances.labels for o in out])
    # the one NMS of the video, then clipped to it (TALMetric's merge)
    merge = TALMetric(nms=dict(method='soft', sigma=0.5, min_score=0.01),
                      max_per_video=100).merge_video
    return merge(seg, sc, lab, duration=x.shape[1] * STEP)

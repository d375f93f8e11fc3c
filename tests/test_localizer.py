"""Feature-mode training of the localizer on planted synthetic segments, and
sliding-window inference over a video longer than the training window."""
import json
import time

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.evaluation import TALMetric
from re2tal_mm.structures import pairwise_tiou

from mmaction.registry import MODELS
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


def build_model():
    return MODELS.build(dict(
        type='TemporalActionLocalizer',
        neck=dict(type='ActionFormerNeck', in_channels=C, embed_dims=32,
                  num_heads=4, window_size=9, drop_path=0.0),
        head=dict(type='ActionFormerHead', num_classes=K, in_channels=32,
                  feat_channels=32),
        post_processor=dict(type='TALPostProcessor', score_thr=0.01,
                            nms=dict(method='soft', sigma=0.5, min_score=0.01,
                                     max_num=100))))


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


@pytest.fixture(scope='module')
def trained():
    # one thread: tiny ops gain nothing from more, and a shared CPU makes
    # several threads spin (10-20x slower under load)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train()
    finally:
        torch.set_num_threads(threads)


def train():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    protos = [rng.normal(0, 1, C).astype(np.float32) * 1.5 for _ in range(K)]
    videos = [make_video(rng, 256, protos) for _ in range(12)]
    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    losses, iters, t0 = [], 300, time.time()
    model.train()
    for it in range(iters):
        batch = []
        for _ in range(4):
            v = int(rng.integers(len(videos)))
            x, segs, labels = videos[v]
            start = int(rng.integers(0, x.shape[1] - WIN + 1))
            batch.append(window_sample(f'v{v}', x, segs, labels, start, WIN))
        data = model.data_preprocessor(
            dict(inputs=[b[0] for b in batch],
                 data_samples=[b[1] for b in batch]), True)
        loss = model(**data, mode='loss')
        total = sum(loss.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    model.eval()
    return model, protos, losses, iters, time.time() - t0


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


def tal_metric_map(samples, gts, tmp_path):
    """mAP@0.5 with the plugin's TALMetric (None while it does not exist)."""
    try:
        from re2tal_mm.evaluation import TALMetric
    except ImportError:
        return None
    names = [f'class{k}' for k in range(K)]
    db = {}
    for v, seg, lab in gts:
        db.setdefault(v, dict(subset='test', duration=WIN * STEP,
                              annotations=[]))['annotations'].append(
                                  dict(segment=seg, label=names[lab]))
    ann = tmp_path / 'gt.json'
    ann.write_text(json.dumps(dict(database=db)))
    metric = TALMetric(ann_file=str(ann), tiou_thresholds=(0.5, ), nms=None,
                       class_names=names, print_per_class=False)
    metric.process(None, samples)
    return metric.compute_metrics(metric.results)['mAP@0.50']


def test_feature_mode_training_reaches_map(trained, tmp_path):
    model, protos, losses, iters, seconds = trained
    rng = np.random.default_rng(1)
    preds, gts, samples = [], [], []
    for v in range(6):  # held-out windows, one window per video
        x, segs, labels = make_video(rng, WIN, protos)
        feat, s = window_sample(f't{v}', x, segs, labels, 0, WIN)
        data = model.data_preprocessor(dict(inputs=[feat], data_samples=[s]))
        with torch.no_grad():
            samples += model(**data, mode='predict')
        p = samples[-1].pred_instances
        preds += [(f't{v}', a.tolist(), int(b), float(c))
                  for a, b, c in zip(p.segments, p.labels, p.scores)]
        gts += [(f't{v}', a.tolist(), int(b)) for a, b in zip(segs, labels)]
    m_ap = average_precision(preds, gts)
    metric_map = tal_metric_map(samples, gts, tmp_path)
    q = len(losses) // 4
    means = [np.mean(losses[i * q:(i + 1) * q]) for i in range(4)]
    print(f'\nmAP@0.5={m_ap:.3f} (TALMetric: {metric_map}) after {iters} '
          f'iterations in {seconds:.1f}s; loss quarters '
          f'{np.round(means, 3).tolist()}')
    assert all(a > b for a, b in zip(means, means[1:])), means
    assert m_ap >= 0.9
    if metric_map is not None:
        assert metric_map == pytest.approx(m_ap, abs=1e-6)


def test_sliding_window_inference_in_video_seconds(trained):
    model, protos, *_ = trained
    rng = np.random.default_rng(2)
    x, segs, labels = make_video(rng, 3 * WIN + 40, protos)  # 424 steps
    seg, sc, lab = predict_video(model, 'long', x, segs, labels, WIN, WIN // 2)
    assert float(seg.max()) <= x.shape[1] * STEP + 1e-4
    # every planted segment is found (same label, tIoU >= 0.5) among the
    # confident predictions, in the video's seconds
    conf = sc > 0.3
    iou = pairwise_tiou(torch.from_numpy(segs), seg[conf])
    same = torch.from_numpy(labels)[:, None] == lab[conf][None]
    found = ((iou >= 0.5) & same).any(1)
    assert float(found.float().mean()) >= 0.9, (found, segs)
    # and the segments past the first window are found too (offsets applied)
    assert bool(found[torch.from_numpy(segs[:, 0]) > WIN * STEP].all())

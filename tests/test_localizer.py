"""Feature-mode training of the localizer on planted synthetic segments, and
sliding-window inference over a video longer than the training window."""
import json
import time

import numpy as np
import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.evaluation import TALMetric
from re2tal_mm.structures import pairwise_tiou
from re2tal_mm.testing import (STEP, WIN, C, K, average_precision, make_video,
                               predict_video, window_sample)

from mmaction.registry import MODELS


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


def tal_metric_map(samples, gts, tmp_path):
    """mAP@0.5 with the plugin's TALMetric."""
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

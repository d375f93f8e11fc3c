"""TriDet against ActionFormer on synthetic long-video features.

Every model is a feature-mode ``TemporalActionLocalizer`` trained with the
same data stream, optimizer, batch size and number of iterations, on one of
two synthetic sets (``--data``):

- ``thumos`` (the long-video benchmark): features over the *real* layouts of
  THUMOS-14 (:class:`ThumosLayouts`: every video's duration, segments,
  labels and ``Ambiguous`` regions from the annotation files in
  ``../shared/data/thumos-14``; 200 validation videos to train on, 210 test
  videos to evaluate; 20 classes; medians of 932 / 1211 feature steps a
  video, up to 12,537, 60 videos longer than the 2304-step training window;
  actions of 4 to 137 steps from the 1st to the 99th percentile; validation
  videos end at their last segment, the files give no duration) on the
  published clip grid (16 frames every 4), trained on 2304-step windows and
  evaluated whole, as mAP at tIoU 0.3:0.1:0.7 by the plugin's evaluator;
- ``toy``: random 128-step windows of 12 videos of 256 steps (the generator
  of ``re2tal_mm.testing``, which ``tests/test_localizer.py`` uses),
  evaluated on held-out videos of 512 steps by sliding windows (hop 64)
  merged with Soft-NMS, as mAP at tIoU 0.3:0.1:0.9. ``--blur`` makes its
  boundaries ambiguous (features smoothed in time).

``--proto-scale`` sets the class signal (on ``thumos`` 1.0 was chosen on
ActionFormer alone, before TriDet ran, for an average mAP near the published
THUMOS-14 numbers).

Rows: ActionFormer (its neck and head), each of TriDet's parts alone (the
Trident head on the ActionFormer neck, the ActionFormer head on the SGP neck)
and TriDet (SGP neck and Trident head)::

    OMP_NUM_THREADS=1 python tools/analysis/compare_heads.py --data thumos \
        --iters 2000 --warmup 200 --proto-scale 1.0 --seeds 0 1 2 \
        --models TriDet "ActionFormer (neck"
    OMP_NUM_THREADS=1 python tools/analysis/compare_heads.py \
        --iters 300 --seeds 0 1 2

``--models`` runs only the rows whose name contains one of its arguments
(``--models TriDet "ActionFormer (neck"``: the two full models);
``--sgp-neck KEY=VALUE ...`` overrides entries of the SGP neck's config
(``TRIDET_NECK``), e.g. ``--sgp-neck kernel_size=3 k=1.5``, and
``--af-neck`` those of the ActionFormer neck's (``AF_NECK``).
"""
import argparse
import ast
import os.path as osp
import time

import numpy as np
import torch

import re2tal_mm  # noqa: F401  (registers the models)
from re2tal_mm.testing import (WIN, C, K, average_precision, make_video,
                               predict_video, window_sample)

from mmaction.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

DIMS = 32
# --data thumos: the published feature grid (16-frame clips every 4 frames;
# feature i stands for its clip's middle, frame 4 * i + 8: grid centre 2),
# training window and ActionFormer's THUMOS-14 attention window (the SGP
# neck is at its published THUMOS-14 shape already). The published
# ActionFormer neck's two full-length blocks and normalised levels
# (``--af-neck num_stem_blocks=2 out_norm=True``) did worse here: seed 0,
# average mAP 0.312 / 0.673 after 1000 / 2000 iterations, against 0.493 /
# 0.748 without.
THUMOS_CLIP, THUMOS_STRIDE, THUMOS_WIN = 16, 4, 2304
THUMOS_CENTER = THUMOS_CLIP / 2 / THUMOS_STRIDE
THUMOS_AF_NECK = dict(window_size=19)
AF_NECK = dict(type='ActionFormerNeck', in_channels=C, embed_dims=DIMS,
               num_heads=4, window_size=9, drop_path=0.0)
# The SGP neck runs the published THUMOS-14 shape (``kernel_size=1``: w = 1
# in the stem and the pyramid, ``k=5``: a large window of 11). On the
# THUMOS-14 layouts (seed 0, 1000 iterations) its gated products add little:
# average mAP 0.676, 0.662 with ``init_std=0`` (products dead). On the toy
# data, neck variants measured with the Trident head (``--sgp-neck``, seeds
# 0-4, 300 iterations;
# mAP@0.9 of this config 0.944, avg mAP 0.991, ActionFormer 0.974 / 0.996)
# stay within seed noise and below ActionFormer: w = 3 and k = 1.5 0.952,
# no output LayerNorm 0.937, max pooling over the valid instants (-inf
# padding, as PyTorch's MaxPool1d) 0.936 and dense (channel-mixing) FC
# layers 0.922 (both temporary options, not kept), a third embedding
# conv 0.950, init_std 0 / 0.3 / 1.0 0.952 / 0.925 / 0.822, layer scale 1e-4
# alone 0.927, layer scale 1e-4 with drop path 0.1 (the published
# regularisation) 0.959, against 0.981 for ActionFormer with its drop path
# (``--af-neck drop_path=0.1``); 600 iterations (seeds 0-2) 0.947 vs
# ActionFormer 0.983.
TRIDET_NECK = dict(type='TriDetNeck', in_channels=C, embed_dims=DIMS,
                   mlp_dims=2 * DIMS, num_groups=4, kernel_size=1, k=5.,
                   drop_path=0.0, layer_scale=None)
AF_HEAD = dict(type='ActionFormerHead', num_classes=K, in_channels=DIMS,
               feat_channels=DIMS)
# The published model stops the boundary branches' gradient at the neck
# (``detach_boundary_feats``), which assumes a pyramid over strong pretrained
# features (I3D, 2048-d). Here the neck is trained from scratch on 16-d
# features, and the ActionFormer head's regression trains it: detached, the
# Trident head's boundary responses read features no boundary loss shaped
# (decoded boundary error on training windows about 2x ActionFormer's, mAP@0.9
# 0.80 vs 0.91 over seeds 0-2 with 300 iterations), so both heads train the
# neck here.
# The SGP neck and the Trident head run with their defaults for the SGP
# convolutions' init (Gaussian, zero biases: ``TriDetNeck(init_std=0.1)``)
# and the center offsets (no ReLU: ``TriDetHead(offset_relu=False)``); their
# docstrings say what PyTorch's init and the ReLU did to seed 2.
TRIDET_HEAD = dict(type='TriDetHead', num_classes=K, in_channels=DIMS,
                   feat_channels=DIMS, num_bins=16,
                   detach_boundary_feats=False)
# On the THUMOS-14 layouts (average mAP 0.3:0.1:0.7, seeds 0-2) TriDet
# leads at both budgets: 0.690 against 0.520 after 1000 iterations, 0.804
# against 0.764 after 2000, on every seed. Most of it is the neck (seed 0,
# 1000 iterations: ActionFormer 0.493, the Trident head on its neck 0.520,
# the ActionFormer head on the SGP neck 0.654, TriDet 0.676). ActionFormer
# converges later (0.493 -> 0.748 from 1000 to 2000 iterations, seed 0).
MODELS_TO_COMPARE = {
    'ActionFormer (neck + head)': (AF_NECK, AF_HEAD),
    'Trident head on ActionFormer neck': (AF_NECK, TRIDET_HEAD),
    'ActionFormer head on SGP neck': (TRIDET_NECK, AF_HEAD),
    'TriDet (SGP neck + Trident head)': (TRIDET_NECK, TRIDET_HEAD),
}


def build(neck, head):
    return MODELS.build(dict(
        type='TemporalActionLocalizer', neck=neck, head=head,
        post_processor=dict(type='TALPostProcessor', score_thr=0.01,
                            nms=dict(method='soft', sigma=0.5,
                                     min_score=0.01, max_num=100))))


def blurred(video, sigma):
    """The video with its features smoothed in time by a Gaussian of
    ``sigma`` steps: the boundaries become ramps (ambiguous), the ground
    truth stays where the actions were planted."""
    if sigma <= 0:
        return video
    x, segs, labels = video
    r = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma)**2)
    kernel /= kernel.sum()
    x = np.stack([np.convolve(row, kernel, mode='same') for row in x])
    return x.astype(np.float32), segs, labels


def render_clip_features(rng, info, protos, classes, noise):
    """Clip features of one video of an ActivityNet-style database entry
    (``duration``, ``fps``, ``annotations``, ``ambiguous``) as in
    :class:`ThumosLayouts`: ``(C, T)`` features (clip ``i`` covers frames
    ``4 i`` to ``4 i + 15``, frame ``f`` the instants ``[f, f + 1) / fps``),
    segments (seconds) and label indices into ``classes``."""
    fps = info['fps']
    frames = max(int(round(info['duration'] * fps)), THUMOS_CLIP)
    x = np.empty((protos.shape[1], frames))
    x[:] = rng.normal(0, 0.5, (protos.shape[1], 1))
    x += rng.normal(0, noise * THUMOS_CLIP**0.5, x.shape)
    segs, labels = [], []
    for a in info['annotations']:
        k = classes.index(a['label'])
        s, e = a['segment']
        f0, f1 = int(round(s * fps)), int(round(e * fps))
        x[:, f0:f1] += rng.uniform(0.6, 1.4) * protos[k][:, None]
        segs.append([s, e])
        labels.append(k)
    for s, e in info.get('ambiguous', []):
        k = int(rng.integers(len(classes)))
        x[:, int(round(s * fps)):int(round(e * fps))] += \
            0.5 * protos[k][:, None]
    csum = np.concatenate([np.zeros((len(x), 1)), np.cumsum(x, 1)], 1)
    starts = np.arange(0, frames - THUMOS_CLIP + 1, THUMOS_STRIDE)
    feats = (csum[:, starts + THUMOS_CLIP] - csum[:, starts]) / THUMOS_CLIP
    return (feats.astype(np.float32),
            np.array(segs, np.float32).reshape(-1, 2), np.array(labels))


class ThumosLayouts:
    """Synthetic features over the real layouts of THUMOS-14: every video's
    duration, frame rate, segments, labels (20 classes) and ``Ambiguous``
    regions from the annotation files in ``data_dir`` (validation videos to
    train on, test videos to evaluate), read by
    :func:`~re2tal_mm.datasets.convert_gtad_thumos`.

    The features imitate the published I3D features (16-frame clips every 4
    frames): every frame gets its video's background vector (N(0, 0.5)),
    the prototype of every action running at it (scaled by a per-instance
    amplitude in U(0.6, 1.4); an ``Ambiguous`` region half a random class's)
    and frame noise; a feature is the mean of its clip's 16 frames, so
    boundaries are 16-frame ramps and neighbouring features share noise
    (feature noise std ``noise``). Training samples are the published
    ``2304``-step windows (a random crop of a longer video, a shorter video
    whole); a test video is predicted in one pass, as published, and
    scored by :func:`~re2tal_mm.evaluation.evaluate_detection` (the
    ActivityNet matching the published THUMOS-14 numbers use).
    """

    def __init__(self, seed, scale, noise, channels, data_dir):
        from re2tal_mm.datasets import convert_gtad_thumos
        db = convert_gtad_thumos(
            dict(validation=osp.join(data_dir, 'val_Annotation.csv'),
                 test=osp.join(data_dir, 'test_Annotation.csv')),
            osp.join(data_dir, 'thumos14_test_groundtruth.csv'),
            logger='silent')
        self.classes = sorted({a['label'] for v in db.values()
                               for a in v['annotations']})
        rng = np.random.default_rng(seed)
        self.protos = rng.normal(0, scale, (len(self.classes), channels))
        self.db = db
        self.train, self.test = [
            [(v, render_clip_features(rng, db[v], self.protos,
                                      self.classes, noise))
             for v, i in db.items() if i['subset'] == subset]
            for subset in ('validation', 'test')]

    def _sample(self, video, start, length, with_gt):
        vid, (x, segs, labels) = video
        info = self.db[vid]
        return window_sample(vid, x, segs, labels, start, length, with_gt,
                             info['fps'], THUMOS_STRIDE, THUMOS_CENTER,
                             info['duration'])

    def train_sample(self, rng):
        video = self.train[int(rng.integers(len(self.train)))]
        steps = video[1][0].shape[1]
        start = int(rng.integers(0, max(steps - THUMOS_WIN, 0) + 1))
        return self._sample(video, start, THUMOS_WIN, True)

    def evaluate(self, model, thresholds):
        """mAP per tIoU threshold over the test videos."""
        from re2tal_mm.evaluation import evaluate_detection
        results = {}
        with torch.no_grad():
            for video in self.test:
                feat, sample = self._sample(video, 0,
                                            video[1][0].shape[1], False)
                data = model.data_preprocessor(
                    dict(inputs=[feat], data_samples=[sample]), False)
                pred = model(**data, mode='predict')[0].pred_instances
                results[video[0]] = [
                    dict(segment=seg.tolist(), score=float(sc),
                         label=self.classes[int(lab)])
                    for seg, sc, lab in zip(pred.segments, pred.scores,
                                            pred.labels)]
        gt = {v: i for v, i in self.db.items() if i['subset'] == 'test'}
        return evaluate_detection(gt, results, thresholds)['mAP']


def train(model, data, iters, seed, lr=2e-3, batch=4, warmup=0):
    """AdamW on random training windows of ``data`` (``warmup`` iterations
    of linear warm-up, then cosine decay when ``warmup`` > 0, else a constant
    rate); returns the seconds it took."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 100)  # same stream for every model
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def factor(i):
        if i < warmup:
            return (i + 1) / warmup
        return 0.5 * (1 + np.cos(np.pi * (i - warmup) / (iters - warmup)))

    if warmup:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    t0 = time.time()
    for _ in range(iters):
        samples = [data.train_sample(rng) for _ in range(batch)]
        batched = model.data_preprocessor(
            dict(inputs=[s[0] for s in samples],
                 data_samples=[s[1] for s in samples]), True)
        loss = sum(model(**batched, mode='loss').values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if warmup:
            sched.step()
    model.eval()
    return time.time() - t0


class ToyData:
    """Random 128-step windows of 12 videos of 256 steps (the generator of
    ``re2tal_mm.testing``), held-out videos of 512 steps evaluated by
    sliding windows (hop 64) merged with Soft-NMS; class prototypes of norm
    ~``scale * sqrt(C)`` in noise of std 0.6."""

    def __init__(self, seed, scale, sigma=0.):
        rng = np.random.default_rng(seed)
        protos = [rng.normal(0, 1, C).astype(np.float32) * scale
                  for _ in range(K)]
        self.train = [blurred(make_video(rng, 2 * WIN, protos), sigma)
                      for _ in range(12)]
        self.test = [blurred(make_video(rng, 4 * WIN, protos), sigma)
                     for _ in range(8)]

    def train_sample(self, rng):
        v = int(rng.integers(len(self.train)))
        x, segs, labels = self.train[v]
        start = int(rng.integers(0, x.shape[1] - WIN + 1))
        return window_sample(f'v{v}', x, segs, labels, start, WIN)

    def evaluate(self, model, thresholds):
        """mAP per tIoU threshold over the held-out videos."""
        preds, gts = [], []
        for v, (x, segs, labels) in enumerate(self.test):
            seg, sc, lab = predict_video(model, f't{v}', x, segs, labels,
                                         WIN, WIN // 2)
            preds += [(f't{v}', a.tolist(), int(b), float(c))
                      for a, b, c in zip(seg, lab, sc)]
            gts += [(f't{v}', a.tolist(), int(b))
                    for a, b in zip(segs, labels)]
        return [average_precision(preds, gts, t) for t in thresholds]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--proto-scale', type=float, default=1.5,
                        help='class signal (1.5: the unit test\'s data)')
    parser.add_argument('--blur', type=float, default=0.,
                        help='std (steps) of a temporal Gaussian blur of '
                        'the features: ambiguous boundaries')
    parser.add_argument('--tious', type=float, nargs='+', default=None,
                        help='tIoU thresholds (default 0.3:0.1:0.9, '
                        'THUMOS-14\'s 0.3:0.1:0.7 with --data thumos)')
    parser.add_argument('--data', choices=['toy', 'thumos'], default='toy',
                        help='toy: the unit test\'s short videos; thumos: '
                        'features over the real THUMOS-14 layouts')
    parser.add_argument('--thumos-dir', default=osp.join(
        ROOT, '..', 'shared', 'data', 'thumos-14'),
        help='the THUMOS-14 annotation CSVs (--data thumos)')
    parser.add_argument('--noise', type=float, default=0.6,
                        help='feature noise std (--data thumos)')
    parser.add_argument('--channels', type=int, default=32,
                        help='feature channels (--data thumos)')
    parser.add_argument('--batch', type=int, default=None,
                        help='default 4 (toy), 2 (thumos, as published)')
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--warmup', type=int, default=0,
                        help='linear warm-up iterations, then cosine '
                        'decay (0: a constant rate)')
    parser.add_argument('--models', nargs='+', default=None,
                        help='run only the rows whose name contains one of '
                        'these (case-insensitive) substrings')
    parser.add_argument('--sgp-neck', nargs='+', default=[],
                        metavar='KEY=VALUE',
                        help='override TRIDET_NECK entries (values are '
                        'Python literals), e.g. kernel_size=3 k=1.5')
    parser.add_argument('--af-neck', nargs='+', default=[],
                        metavar='KEY=VALUE',
                        help='override AF_NECK entries, e.g. drop_path=0.1')
    args = parser.parse_args()
    thumos = args.data == 'thumos'
    tious = args.tious or ([0.3, 0.4, 0.5, 0.6, 0.7] if thumos else
                           [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    batch = args.batch or (2 if thumos else 4)
    torch.set_num_threads(1)
    if thumos:
        AF_NECK.update(THUMOS_AF_NECK)
    for cfg, overrides in ((TRIDET_NECK, args.sgp_neck),
                           (AF_NECK, args.af_neck)):
        for kv in overrides:
            key, value = kv.split('=', 1)
            cfg[key] = ast.literal_eval(value)
    chosen = {name: cfg for name, cfg in MODELS_TO_COMPARE.items()
              if args.models is None
              or any(m.lower() in name.lower() for m in args.models)}
    assert chosen, f'no model matches {args.models}'
    results = {name: [] for name in chosen}
    for seed in args.seeds:
        if thumos:
            data = ThumosLayouts(seed, args.proto_scale, args.noise,
                                 args.channels, args.thumos_dir)
            shape = (dict(in_channels=args.channels),
                     dict(num_classes=len(data.classes)))
        else:
            data = ToyData(seed, args.proto_scale, args.blur)
            shape = ({}, {})
        for name, (neck, head) in chosen.items():
            torch.manual_seed(seed)
            model = build(dict(neck, **shape[0]), dict(head, **shape[1]))
            seconds = train(model, data, args.iters, seed, args.lr, batch,
                            args.warmup)
            aps = data.evaluate(model, tious)
            results[name].append(aps + [seconds])
            print(f'seed {seed} {name}: mAP {np.round(aps, 3).tolist()} '
                  f'({seconds:.0f} s)', flush=True)
    cols = ' | '.join(f'{t:g}' for t in tious)
    overrides = ''.join(f', {name} neck {" ".join(kv)}' for name, kv in (
        ('SGP', args.sgp_neck), ('ActionFormer', args.af_neck)) if kv)
    setting = (f'THUMOS-14 layouts, {args.channels} channels, noise '
               f'{args.noise}' if thumos else f'blur {args.blur}')
    print(f'\n{args.data} data, {args.iters} iterations, batch {batch}, lr '
          f'{args.lr:g}, warm-up {args.warmup}, proto scale '
          f'{args.proto_scale}, {setting}, seeds {args.seeds}'
          f'{overrides}: mAP at tIoU (mean over seeds), avg mAP (mean +- '
          'std over seeds)\n')
    print(f'| model | {cols} | avg mAP | train s |')
    print('|' + ' :--- |' + ' ---: |' * (len(tious) + 2))
    for name, rows in results.items():
        r = np.array(rows)
        aps = r[:, :-1]
        cells = ' | '.join(f'{m:.3f}' for m in aps.mean(0))
        avg = aps.mean(1)
        print(f'| {name} | {cells} | {avg.mean():.3f} +- {avg.std():.3f} '
              f'| {r[:, -1].mean():.0f} |')


if __name__ == '__main__':
    main()

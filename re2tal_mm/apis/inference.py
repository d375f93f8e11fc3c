"""Localize actions in one video file with a trained TAL model.

Reuses the pieces of a sliding-window test: the config's test pipeline, the
window offsets of :class:`TALDataset` (:func:`sliding_window_offsets`) and the
per-video merge of :class:`TALMetric` (:meth:`TALMetric.merge_predictions`),
so a video localized here goes through the same code as ``mim test``.
"""
import copy
import os.path as osp
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from re2tal_mm.datasets.tal_dataset import sliding_window_offsets


def _classes_of(cfg):
    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        ds = cfg.get(key, {}).get('dataset', {})
        if ds.get('classes'):
            return list(ds['classes'])
    if cfg.get('classes'):
        return list(cfg.classes)
    n = cfg.model.head.num_classes
    return [f'class_{i}' for i in range(n)]


def init_localizer(config: Union[str, Config], checkpoint: Optional[str] = None,
                   device: str = 'cpu'):
    """Build the model of ``config`` and load ``checkpoint`` (init_model style).

    The config and its class names are attached as ``model.cfg`` and
    ``model.dataset_meta``.
    """
    import re2tal_mm  # noqa: F401 - registers the components
    from mmaction.registry import MODELS
    cfg = Config.fromfile(config) if isinstance(config, str) else \
        copy.deepcopy(config)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' in model_cfg:  # no download of pretrained backbones
        model_cfg.backbone.pop('pretrained', None)
        model_cfg.backbone['pretrained'] = None
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        classes = (meta.get('dataset_meta') or {}).get('classes')
    else:
        classes = None
    model.cfg = cfg
    model.dataset_meta = dict(classes=list(classes or _classes_of(cfg)))
    model.to(device)
    model.eval()
    return model


def _probe(path):
    """(duration in s, fps) of ``path``; IOError naming it if undecodable."""
    from mmaction.registry import TRANSFORMS
    res = TRANSFORMS.build(dict(type='TALVideoInit')).transform(
        dict(filename=path))
    fps = res.get('avg_fps')
    if not fps or res['total_frames'] <= 0:
        raise IOError(f'cannot decode video {path} (no frames or no fps)')
    return res['total_frames'] / float(fps), float(fps)


def localize_video(model, video_path: str,
                   score_thr: float = 0.0,
                   window_duration: Optional[float] = None,
                   window_overlap: Optional[float] = None,
                   nms: Optional[dict] = None,
                   max_per_video: Optional[int] = None,
                   progress: bool = True) -> dict:
    """Localize actions in ``video_path``.

    Returns ``{'video_id', 'duration', 'fps', 'results': [{'segment': [s, e],
    'score': x, 'label': name}, ...]}`` (seconds, best first), the per-video
    entry of an ActivityNet results file.
    """
    from mmaction.registry import TRANSFORMS
    from re2tal_mm.evaluation import TALMetric
    if not osp.isfile(video_path):
        raise FileNotFoundError(f'video not found: {video_path}')
    cfg = model.cfg
    ds_cfg = cfg.test_dataloader.dataset
    duration, fps = _probe(video_path)
    win = window_duration if window_duration is not None else \
        ds_cfg.get('window_duration')
    overlap = window_overlap if window_overlap is not None else \
        ds_cfg.get('window_overlap', 0.25)
    video_id = osp.splitext(osp.basename(video_path))[0]
    entry = dict(video_id=video_id, filename=video_path, duration=duration,
                 fps=fps, gt_segments=np.zeros((0, 2), np.float32),
                 gt_labels=np.zeros((0, ), np.int64), test_mode=True,
                 ignored_segments=np.zeros((0, 2), np.float32))
    # the windows TALDataset makes in test mode
    if win:
        entries = [dict(entry, window_offset=float(off),
                        window_duration=float(win))
                   for off in sliding_window_offsets(duration, win, overlap)]
    else:
        entries = [entry]
    pipeline = Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t
                        for t in ds_cfg.pipeline])

    evaluator = cfg.get('test_evaluator', {})
    if isinstance(evaluator, (list, tuple)):
        evaluator = evaluator[0] if evaluator else {}
    metric_kwargs = dict(ann_file=None)
    for key, val in (('nms', nms), ('max_per_video', max_per_video)):
        if val is not None:
            metric_kwargs[key] = val
        elif key in evaluator:
            metric_kwargs[key] = evaluator[key]
    metric = TALMetric(**metric_kwargs)

    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(entries))
    with torch.no_grad():
        for e in entries:
            data = pipeline(copy.deepcopy(e))
            samples = model.test_step(pseudo_collate([data]))
            metric.process(None, samples)
            if bar is not None:
                bar.update()
    merged = metric.merge_predictions(metric.results,
                                      model.dataset_meta['classes'])
    dets = []
    for d in merged.get(video_id, []):
        if d['score'] < score_thr:
            continue
        s, t = d['segment']
        s, t = max(0.0, min(s, duration)), max(0.0, min(t, duration))
        if t > s:
            dets.append(dict(segment=[s, t], score=d['score'],
                             label=d['label']))
    return dict(video_id=video_id, duration=duration, fps=fps, results=dets)


def plot_timeline(result: dict, out_file: str,
                  classes: Optional[Sequence[str]] = None,
                  max_segments: int = 100,
                  ground_truth: Optional[Sequence[dict]] = None) -> str:
    """Timeline of ``result`` (from :func:`localize_video`) as an image.

    One row per class, one bar per detected segment coloured by its score,
    the video's duration on the x axis. With ``ground_truth`` (ActivityNet
    annotations: ``[{"segment": [s, e], "label": name}, ...]``) the true
    segments are drawn as red outlines on their class rows.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    dets = sorted(result['results'], key=lambda d: -d['score'])[:max_segments]
    names = list(classes) if classes else sorted({d['label'] for d in dets})
    rows = {n: i for i, n in enumerate(names)}
    cmap, norm = matplotlib.colormaps['viridis'], colors.Normalize(0, 1)
    fig, ax = plt.subplots(figsize=(10, 1 + 0.5 * max(1, len(names))))
    for g in ground_truth or []:
        s, e = g['segment']
        y = rows.setdefault(g['label'], len(rows))
        ax.barh(y, e - s, left=s, height=0.8, fill=False, edgecolor='red',
                linewidth=1.5, label='ground truth')
    for d in reversed(dets):  # best drawn last (on top)
        s, e = d['segment']
        y = rows.setdefault(d['label'], len(rows))
        ax.barh(y, e - s, left=s, height=0.6, color=cmap(norm(d['score'])),
                edgecolor='black', linewidth=0.5)
        ax.text(s, y, f'{d["score"]:.2f}', va='center', fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(list(rows))
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.set_xlim(0, result['duration'])
    ax.set_xlabel('time (s)')
    ax.set_title(f'{result["video_id"]}: {len(dets)} detected segment(s)')
    if ground_truth:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[:1], labels[:1], loc='upper right', fontsize=8)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                 label='score')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file

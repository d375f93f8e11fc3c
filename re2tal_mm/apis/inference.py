"""Localize actions in one video file with a trained TAL model.

Reuses the pieces of a sliding-window test: the config's test pipeline, the
windows of :class:`TALDataset` (:func:`video_windows`) and the
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
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from re2tal_mm.datasets.video_reader import open_video
from re2tal_mm.datasets.windows import video_windows
from re2tal_mm.rewiring.spec import config_type_name

# plotting moved to .visualization; still importable from here
from .visualization import plot_timeline, timeline_lanes  # noqa: F401


def _classes_of(cfg):
    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        ds = cfg.get(key, {}).get('dataset', {})
        if ds.get('classes'):
            return list(ds['classes'])
    if cfg.get('classes'):
        return list(cfg.classes)
    n = cfg.model.head.num_classes
    return [f'class_{i}' for i in range(n)]


def init_localizer(config: Union[str, Config],
                   checkpoint: Optional[str] = None, device: str = 'cpu',
                   rewiring: Optional[Union[dict, bool]] = None):
    """Build the model of ``config`` and load ``checkpoint`` (like
    ``init_recognizer``).

    The backbone is rewired as the model was trained: as the checkpoint
    records (``meta['re2tal_rewiring']``, written by ``RewiringMetaHook`` /
    ``RewireBackboneHook``), else as the config says (``model.rewire``, else
    its ``RewireBackboneHook``); one log line says which and why. The config
    and its class names are attached as ``model.cfg`` and
    ``model.dataset_meta``.

    Args:
        config (str | Config): The model's config.
        checkpoint (str, optional): Checkpoint file. Defaults to None.
        device (str): Defaults to ``'cpu'``.
        rewiring (dict | bool, optional): Override: a rewiring spec
            (``dict(mode=..., **options)``) or False to run un-rewired.
            Defaults to None (as trained).
    """
    import re2tal_mm  # noqa: F401 - registers the components
    from re2tal_mm.rewiring import apply_rewiring, rewiring_spec
    from re2tal_mm.rewiring.spec import (UNRECORDED, checkpoint_rewiring,
                                         choose_rewiring, describe)

    from mmaction.registry import MODELS
    cfg = Config.fromfile(config) if isinstance(config, str) else \
        copy.deepcopy(config)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' in model_cfg:  # no download of pretrained backbones
        model_cfg.backbone.pop('pretrained', None)
        model_cfg.backbone['pretrained'] = None
    model = MODELS.build(model_cfg)
    trained, classes = UNRECORDED, None
    if checkpoint is not None:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        trained = checkpoint_rewiring(ckpt)
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        classes = (meta.get('dataset_meta') or {}).get('classes')
    spec, source = choose_rewiring(cfg, trained, rewiring)
    if rewiring_spec(model) != spec:
        apply_rewiring(model, spec)
    note = ''
    if checkpoint is not None and trained == UNRECORDED:
        note = (f'; {checkpoint} does not record how it was trained (an '
                'older checkpoint?): run as the config says')
    log = MMLogger.get_current_instance()
    (log.warning if note else log.info)(
        f'init_localizer: backbone {describe(spec)} (from {source}){note}')
    model.cfg = cfg
    model.dataset_meta = dict(classes=list(classes or _classes_of(cfg)))
    model.to(device)
    model.eval()
    return model


def _split_pipeline(steps: Sequence,
                    backends: Optional[Sequence[str]] = None):
    """The test pipeline ``steps`` cut after its ``TALVideoInit``.

    Args:
        steps (Sequence[dict | Callable]): The test pipeline (configs or
            transforms).
        backends (Sequence[str], optional): Decoding backends given to its
            ``TALVideoInit``. Defaults to None (the config's).

    Returns:
        tuple[Compose, Compose]: The head, which opens the video (metadata
        only; empty if the pipeline has no ``TALVideoInit``), and the tail,
        which decodes and transforms one window.
    """
    from re2tal_mm.datasets.transforms import TALVideoInit

    from mmaction.registry import TRANSFORMS
    steps = list(steps)
    at = next((i for i, s in enumerate(steps)
               if config_type_name(s) == 'TALVideoInit'), None)
    if backends is not None:
        if at is None:
            raise ValueError('backends given, but the test pipeline has no '
                             'TALVideoInit to give them to')
        steps[at] = dict(steps[at], backends=tuple(backends)) \
            if isinstance(steps[at], dict) else TALVideoInit(
                backends=backends, num_threads=steps[at].num_threads,
                io_backend=steps[at].io_backend)
    built = [TRANSFORMS.build(copy.deepcopy(s)) if isinstance(s, dict) else s
             for s in steps]
    cut = 0 if at is None else at + 1
    return Compose(built[:cut]), Compose(built[cut:])


def _window_options(ds_cfg, sliding_window: Optional[bool],
                    window_duration: Optional[float],
                    window_overlap: Optional[float],
                    window_count: Optional[str]) -> tuple:
    """``(sliding, overlap, count)``: the arguments, else the test
    dataset's (as :class:`TALDataset` reads them)."""
    if window_duration is not None:
        MMLogger.get_current_instance().warning(
            'localize_video(window_duration=...) is deprecated and its '
            'value is not used: the windows are the test pipeline\'s '
            'TALWindowSample windows on the video\'s own frame grid; pass '
            'sliding_window=True instead')
    sliding = sliding_window
    if sliding is None:
        sliding = bool(window_duration) if window_duration is not None \
            else ds_cfg.get('sliding_window')
    if sliding is None:
        sliding = bool(ds_cfg.get('window_duration'))
    overlap = window_overlap if window_overlap is not None else \
        ds_cfg.get('window_overlap', 0.25)
    count = window_count or ds_cfg.get('window_count', 'cover')
    return bool(sliding), overlap, count


def _build_metric(cfg, nms: Optional[dict], max_per_video: Optional[int]):
    """A :class:`TALMetric` merging windows as the config's evaluator."""
    from re2tal_mm.evaluation import TALMetric
    evaluator = cfg.get('test_evaluator', {})
    if isinstance(evaluator, (list, tuple)):
        evaluator = evaluator[0] if evaluator else {}
    metric_kwargs = dict(ann_file=None)
    for key, val in (('nms', nms), ('max_per_video', max_per_video),
                     ('clip', None), ('round_before_nms', None),
                     ('drop_empty', None)):
        if val is not None:
            metric_kwargs[key] = val
        elif key in evaluator:
            metric_kwargs[key] = evaluator[key]
    return TALMetric(**metric_kwargs)


def _kept_detections(merged: Sequence[dict], score_thr: float) -> list:
    """The merge's detections (clipped to the video by it, as in ``mim
    test``) at or above ``score_thr``."""
    return [dict(segment=list(d['segment']), score=d['score'],
                 label=d['label']) for d in merged if d['score'] >= score_thr]


def localize_video(model: torch.nn.Module, video_path: str,
                   score_thr: float = 0.0,
                   window_duration: Optional[float] = None,
                   window_overlap: Optional[float] = None,
                   nms: Optional[dict] = None,
                   max_per_video: Optional[int] = None,
                   progress: bool = True,
                   backends: Optional[Sequence[str]] = None,
                   sliding_window: Optional[bool] = None,
                   window_count: Optional[str] = None) -> dict:
    """Localize actions in ``video_path``, one sliding window at a time.

    The video is opened once for its metadata (duration and frame rate from
    the container, no frame decoded); each window of the test dataset's
    sliding-window layout then goes through the rest of the config's test
    pipeline, which decodes only that window's frames, so memory does not
    grow with the video's length. The windows are those
    ``TALDataset`` makes of the video in ``mim test``
    (:func:`~re2tal_mm.datasets.windows.video_windows`: the test pipeline's
    ``TALWindowSample`` windows on the video's own frame grid, from the
    frame count and fps of its header); they are merged by
    :meth:`TALMetric.merge_predictions`, as in ``mim test``.

    Args:
        model (nn.Module): A model from :func:`init_localizer`.
        video_path (str): Video file.
        score_thr (float): Keep detections scoring at least this.
            Defaults to 0.0.
        window_duration (float, optional): Deprecated: set, as
            ``sliding_window=True`` (unless that is given), with a warning;
            its value is not used. Defaults to None.
        window_overlap (float, optional): Overlap ratio of windows.
            Defaults to None (the test dataset's, else 0.25).
        nms (dict, optional): NMS of the merge. Defaults to None (the test
            evaluator's).
        max_per_video (int, optional): Detections kept per video. Defaults
            to None (the test evaluator's).
        progress (bool): Show a progress bar over windows (stderr).
            Defaults to True.
        backends (Sequence[str], optional): Decoding backends of the
            pipeline's ``TALVideoInit``, e.g. ``('pyav', )``. Defaults to
            None (the config's).
        sliding_window (bool, optional): Sliding windows (else the whole
            video as one sample). Defaults to None (the test dataset's
            ``sliding_window``, else whether it sets ``window_duration``).
        window_count (str, optional): ``'cover'`` or ``'opentad'``, see
            ``TALDataset``. Defaults to None (the test dataset's, else
            ``'cover'``).

    Returns:
        dict: ``{'video_id', 'duration', 'fps', 'results': [{'segment':
        [s, e], 'score': x, 'label': name}, ...]}`` (seconds, best first),
        the per-video entry of an ActivityNet results file.
    """
    from tqdm import tqdm
    if not osp.isfile(video_path):
        raise FileNotFoundError(f'video not found: {video_path}')
    cfg = model.cfg
    ds_cfg = cfg.test_dataloader.dataset
    head, tail = _split_pipeline(ds_cfg.pipeline, backends)
    video_id = osp.splitext(osp.basename(video_path))[0]
    entry = dict(video_id=video_id, filename=video_path,
                 gt_segments=np.zeros((0, 2), np.float32),
                 gt_labels=np.zeros((0, ), np.int64), test_mode=True,
                 ignored_segments=np.zeros((0, 2), np.float32))
    opened = open_video(video_path, head if head.transforms else None)
    fps = float(opened['avg_fps'])
    entry.update(duration=opened['total_frames'] / fps, fps=fps)
    # what the head added (the reader and its metadata) joins every window
    video = {k: v for k, v in opened.items()
             if head.transforms and (k not in entry or v is not entry[k])}
    del opened
    sliding, overlap, count = _window_options(
        ds_cfg, sliding_window, window_duration, window_overlap,
        window_count)
    entries = [dict(entry, **win) for win in video_windows(
        dict(entry, **video), tail.transforms, overlap, count)] \
        if sliding else [entry]
    metric = _build_metric(cfg, nms, max_per_video)
    try:
        with torch.no_grad():
            for e in tqdm(entries, desc=video_id, unit='window',
                          disable=not progress):
                data = tail(dict(copy.deepcopy(e), **video))
                metric.process(None, model.test_step(pseudo_collate([data])))
                del data
    finally:
        reader = video.pop('video_reader', None)
        if hasattr(reader, 'close'):
            reader.close()
    merged = metric.merge_predictions(metric.results,
                                      model.dataset_meta['classes'])
    return dict(video_id=video_id, duration=entry['duration'], fps=fps,
                results=_kept_detections(merged.get(video_id, []),
                                         score_thr))

"""OpenTAD's post-processing settings as ours, and run through our pipeline.

OpenTAD (``SingleStageDetector.post_processing`` / ``TriDet.post_processing``
and ``gather_ddp_results``) thresholds and sorts each video's (or window's)
class scores, keeps the top-k, runs ``batched_nms`` in feature-grid units
(per video; per merged video in sliding-window test, then in seconds),
converts to seconds ``(grid * snippet_stride + window_start_frame +
offset_frames) / fps``, clips to ``[0, duration]`` and rounds (segments to
2 decimals, scores to 4). :func:`run_post_processing` computes the same with
our parts: :class:`~re2tal_mm.models.TALPostProcessor` (threshold / top-k),
:meth:`~re2tal_mm.evaluation.TALMetric.merge_video` (the one NMS, with
:func:`post_processing_cfg`'s settings) and
:class:`~re2tal_mm.structures.TemporalGrid` (grid to seconds).
"""
from typing import Dict, List, Optional, Sequence

import torch

from re2tal_mm.evaluation import TALMetric
from re2tal_mm.models.post_processing import TALPostProcessor
from re2tal_mm.structures import TemporalGrid, clip_segments

#: OpenTAD ``batched_nms`` keyword -> ours (:func:`segment_nms`)
_NMS_KEYS = dict(iou_threshold='iou_threshold', min_score='min_score',
                 max_seg_num='max_num', sigma='sigma',
                 voting_thresh='voting_thresh')
#: ``batched_nms``'s own defaults (``nms.py``)
_NMS_DEFAULTS = dict(iou_threshold=0.0, min_score=0.0, max_seg_num=100,
                     use_soft_nms=True, multiclass=True, sigma=0.5,
                     voting_thresh=0.0, method=2)
_METHODS = {0: 'hard', 1: 'linear', 2: 'soft'}


def nms_cfg(nms: dict) -> dict:
    """An OpenTAD ``post_processing.nms`` dict as :func:`segment_nms`
    arguments computing OpenTAD's ``batched_nms`` exactly."""
    unknown = set(nms) - set(_NMS_DEFAULTS) - {'t1', 't2'}
    if unknown:
        raise ValueError(f'OpenTAD nms settings {sorted(unknown)} have no '
                         'counterpart in segment_nms')
    full = dict(_NMS_DEFAULTS, **nms)
    method = int(full['method']) if full['use_soft_nms'] else 0
    if method not in _METHODS:
        raise ValueError(f'OpenTAD soft-NMS method {method} (improved '
                         'Gaussian) has no counterpart in segment_nms')
    cfg = {ours: full[theirs] for theirs, ours in _NMS_KEYS.items()}
    if full['multiclass'] or cfg['voting_thresh'] <= 0:
        cfg.pop('voting_thresh')  # batched_nms ignores it for multiclass
    cfg.update(method=_METHODS[method],
               class_agnostic=not full['multiclass'], length_eps=1e-6,
               procedure='opentad')
    return cfg


def post_processing_cfg(settings: dict) -> dict:
    """Our configs computing an OpenTAD ``post_processing`` setting.

    Args:
        settings (dict): OpenTAD's ``post_processing`` (``nms``, optional
            ``pre_nms_thresh`` / ``pre_nms_topk``, defaults 0.001 / 2000,
            ``sliding_window``).

    Returns:
        dict: ``post_processor``: the model's ``TALPostProcessor`` config
        (threshold / top-k, no NMS); ``metric``: ``TALMetric`` arguments of
        the one NMS of each video (``nms``, ``max_per_video``, ``clip``:
        ``'after'`` for whole videos, ``'before'`` plus
        ``round_before_nms`` for OpenTAD's sliding-window merge;
        ``drop_empty=False``: OpenTAD keeps segments clipping left empty).
    """
    nms = settings.get('nms')
    metric = dict(nms=None if nms is None else nms_cfg(nms),
                  max_per_video=int(dict(_NMS_DEFAULTS, **(nms or {}))[
                      'max_seg_num']), clip='after', round_before_nms=False,
                  drop_empty=False)
    if settings.get('sliding_window', False):
        metric.update(clip='before', round_before_nms=True)
    post_processor = dict(
        type='TALPostProcessor',
        score_thr=float(settings.get('pre_nms_thresh', 0.001)),
        pre_nms_topk=int(settings.get('pre_nms_topk', 2000)),
        min_duration=None, nms=None)
    return dict(post_processor=post_processor, metric=metric)


def _grid(meta: dict) -> TemporalGrid:
    start = meta.get('window_start_frame', 0) + meta.get('offset_frames', 0)
    return TemporalGrid(fps=float(meta['fps']),
                        stride=float(meta['snippet_stride']),
                        offset=start / float(meta['fps']))


def run_post_processing(settings: dict, metas: Sequence[dict],
                        proposals: Sequence[torch.Tensor],
                        scores: Sequence[torch.Tensor],
                        class_names: Sequence[str]) -> Dict[str, object]:
    """OpenTAD's post-processing of whole videos, computed by our parts.

    Args:
        settings (dict): OpenTAD ``post_processing`` settings (see
            :func:`post_processing_cfg`); ``sliding_window`` must be False
            (one input per video).
        metas (Sequence[dict]): Per video ``video_name``, ``fps``,
            ``snippet_stride``, ``offset_frames``, ``window_start_frame``,
            ``duration`` (s).
        proposals (Sequence[Tensor]): Per video (N, 2) segments in grid
            units, or (N, K, 2) one per class (TriDet).
        scores (Sequence[Tensor]): Per video (N, K) class scores.
        class_names (Sequence[str]): Label index -> name.

    Returns:
        dict: ``results`` ({video: [{'segment', 'label', 'score'}]},
        OpenTAD's rounding) and ``nms_raw`` (per video the NMS inputs
        ``in_*`` after threshold / top-k and its outputs ``out_*``, grid
        units).
    """
    if settings.get('sliding_window', False):
        raise ValueError('run_post_processing takes whole videos '
                         '(sliding_window=False); windows are merged by '
                         'TALMetric.merge_predictions')
    cfg = post_processing_cfg(settings)
    kwargs = {k: v for k, v in cfg['post_processor'].items() if k != 'type'}
    selector = TALPostProcessor(**kwargs)
    merger = TALMetric(clip=None, **{k: v for k, v in cfg['metric'].items()
                                     if k != 'clip'})
    results: Dict[str, List[dict]] = {}
    raw = []
    for meta, prop, score in zip(metas, proposals, scores):
        segs, sc, labels = selector.select(score, prop)
        out = merger.merge_video(segs, sc, labels)
        raw.append(dict(in_segments=segs, in_scores=sc, in_labels=labels,
                        out_segments=out[0], out_scores=out[1],
                        out_labels=out[2]))
        seconds = clip_segments(_grid(meta).to_seconds(out[0].double()),
                                float(meta['duration']))
        results.setdefault(meta['video_name'], []).extend(
            dict(segment=[round(float(t), 2) for t in seg],
                 label=class_names[int(lb)], score=round(float(c), 4))
            for seg, lb, c in zip(seconds, out[2], out[1]))
    return dict(results=results, nms_raw=raw)


def fixture_proposals(fixture: dict) -> Optional[tuple]:
    """Per-video (proposals, scores) of a detector fixture's ``eval``:
    ActionFormer's own ``proposals`` / ``scores``; for TriDet, per class
    ``point -/+ decoded_offset * stride`` (``TriDetHead.get_proposals`` of
    ``TriDet.post_processing``) from ``points`` and ``decoded_offsets``."""
    ev = fixture['eval']
    if 'proposals' in ev:
        return list(ev['proposals']), list(ev['scores'])
    if 'decoded_offsets' not in ev:
        return None
    points = ev['points'].double()
    pos, stride = points[:, 0], points[:, 3]
    props = []
    for reg in ev['decoded_offsets']:  # (K, N, 2)
        props.append(torch.stack([pos - reg[..., 0] * stride,
                                  pos + reg[..., 1] * stride],
                                 -1).transpose(0, 1))  # (N, K, 2)
    return props, list(ev['scores'])

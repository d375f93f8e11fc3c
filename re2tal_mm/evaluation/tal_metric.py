"""TALMetric: detection mAP (ActivityNet or THUMOS-14 protocol), with
per-video merging."""
import json
from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from re2tal_mm.structures import clip_segments, segment_nms
from re2tal_mm.structures.activitynet import (class_names_of,
                                              load_activitynet_json)
from re2tal_mm.structures.reporting import name_some

from mmaction.registry import METRICS
from .functional import (default_tiou_thresholds, evaluate_detection,
                         format_ap_table, warn_of_unseen_videos)
from .recall import EGO4D_TOP_K, recall_metrics, topkx_recall


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _get(sample, key):
    if isinstance(sample, dict):
        return sample.get(key, sample.get('metainfo', {}).get(key))
    return getattr(sample, key, None) if hasattr(sample, key) else \
        sample.metainfo.get(key)


@METRICS.register_module()
class TALMetric(BaseMetric):
    """Temporal action localization mAP (official detection protocols).

    Predictions (segments in seconds, window offset already added) are grouped
    by ``video_id``; each video's predictions from all its windows are merged
    by one final NMS (:func:`segment_nms`), then evaluated against the ground
    truth read from ``ann_file``, by default the annotation file of the
    dataset evaluated (``dataset_meta['ann_file']``, which the Runner sets
    from the dataset), so every rank's samples are judged against the full
    subset, also in distributed evaluation. The ground truth is
    used as it is in the file, as by the official evaluators (no clipping
    to the video, which stays a training-time step of ``TALDataset``); the
    rules of each protocol are in :mod:`re2tal_mm.evaluation.functional`.
    Labels and videos that cannot be scored (unknown labels, predicted
    videos outside the subset, videos of the subset without predictions)
    are named in warnings of the current MMEngine logger; a class of the
    dataset without ground truth in the evaluated subset is said to be so
    (its predictions are left out: the mAP is the mean over the classes
    present, as in the official evaluators).

    Args:
        ann_file (str, optional): ActivityNet-style ground-truth JSON.
            Defaults to None: the evaluated dataset's annotation file
            (``dataset_meta['ann_file']``), so that moving the data with
            ``data_root`` moves the ground truth too.
        subset (str | None): Subset evaluated (all videos if None).
        tiou_thresholds (Sequence[float] | None): Defaults to None: the
            protocol's usual ones (0.5:0.05:0.95 for ``'activitynet'``,
            0.3:0.1:0.7 for ``'thumos14'``).
        protocol (str): ``'activitynet'`` (the official ActivityNet
            evaluator) or ``'thumos14'`` (THUMOS-14's TH14evalDet: detections
            overlapping the ``ambiguous`` regions of the ground truth are not
            false positives, ground-truth-first matching with overlap > t,
            AP summed at true positives), or a dataset's:
            ``'epic-kitchens-100'`` (the challenge's evaluator on a JSON of
            ``tools/data/convert_epic_kitchens.py``), ``'ego4d-mq'``,
            ``'charades'``, ``'multithumos'`` (ActivityNet's rules with
            their thresholds, see
            :data:`~re2tal_mm.evaluation.functional.DATASET_TIOU_THRESHOLDS`).
            Defaults to ``'activitynet'``.
        clip_ground_truth (bool): Clip the ground truth to the video and drop
            empty segments before evaluating, as older versions of this
            metric did. A deliberate difference from the official
            evaluators, for comparison with such numbers only. Defaults to
            False.
        nms (dict | None): Arguments of :func:`segment_nms` for the per-video
            merge, the one NMS of a video's detections (all its windows
            together; the model's ``TALPostProcessor`` runs none by
            default). None: no NMS (the best ``max_per_video`` are kept).
            Defaults to Gaussian Soft-NMS, sigma 0.5, min_score 0.001.
        max_per_video (int): Predictions kept per video after the merge
            (``segment_nms``'s ``max_num`` unless ``nms`` gives one).
            Defaults to 200.
        clip (str | None): When predictions are clipped to ``[0, duration]``
            of their video (the ``duration`` of the samples): ``'after'``
            the NMS (OpenTAD's order for a whole-video input), ``'before'``
            it (OpenTAD's order in its sliding-window merge, where each
            window's results are clipped before the merged NMS), None: not
            clipped. Defaults to ``'after'``.
        round_before_nms (bool): Round segments to 2 decimals and scores to
            4 before the merge, as OpenTAD's sliding-window merge receives
            them (its per-window results are rounded). Defaults to False.
        drop_empty (bool): Leave out the segments that clipping left empty
            (wholly outside their video: not a detection in it). OpenTAD
            keeps them (False). Defaults to True.
        class_names (Sequence[str] | None): Label index -> name; defaults to
            ``dataset_meta['classes']``, else the sorted ground-truth labels.
        out_file (str | None): Dump the merged predictions here as an
            ActivityNet submission JSON.
        recall_top_k (Sequence[int] | None): The k of Recall@kx
            (:func:`~re2tal_mm.evaluation.recall.topkx_recall`) reported
            beside the mAP at each threshold, as ``recall@0.50@1x``; ``()``
            for none. Defaults to None: (1, 5) with ``protocol='ego4d-mq'``,
            none otherwise.
        print_per_class (bool): Log the per-class AP table.
        collect_device (str): Device to collect results on.
        prefix (str | None): Metric name prefix.
    """
    default_prefix = 'tal'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 subset: Optional[str] = None,
                 tiou_thresholds: Optional[Sequence[float]] = None,
                 nms: Optional[dict] = dict(method='soft', sigma=0.5,
                                            min_score=1e-3),
                 max_per_video: int = 200,
                 class_names: Optional[Sequence[str]] = None,
                 out_file: Optional[str] = None,
                 print_per_class: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 protocol: str = 'activitynet',
                 clip_ground_truth: bool = False,
                 clip: Optional[str] = 'after',
                 round_before_nms: bool = False,
                 drop_empty: bool = True,
                 recall_top_k: Optional[Sequence[int]] = None) -> None:
        if clip not in ('after', 'before', None):
            raise ValueError("TALMetric clip must be 'after', 'before' or "
                             f'None, got {clip!r}')
        self.clip = clip
        self.round_before_nms = round_before_nms
        self.drop_empty = drop_empty
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = ann_file
        self.subset = subset
        self.protocol = protocol
        self.tiou_thresholds = tuple(
            default_tiou_thresholds(protocol) if tiou_thresholds is None
            else tiou_thresholds)
        self.clip_ground_truth = clip_ground_truth
        self.recall_top_k = tuple(
            (EGO4D_TOP_K if protocol == 'ego4d-mq' else ())
            if recall_top_k is None else recall_top_k)
        self.nms = nms
        self.max_per_video = max_per_video
        self.class_names = class_names
        self.out_file = out_file
        self.print_per_class = print_per_class

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Keep each sample's video id and predictions (numpy); a sample
        marked ``skipped`` (``TALDataset``'s stand-in for an undecodable one,
        another video's frames) is left out."""
        for sample in data_samples:
            if _get(sample, 'skipped'):
                continue
            pred = _get(sample, 'pred_instances')
            get = (pred.get if isinstance(pred, dict) else
                   lambda k: getattr(pred, k))
            duration = _get(sample, 'duration')
            self.results.append(dict(
                video_id=_get(sample, 'video_id'),
                duration=None if duration is None else float(duration),
                segments=_np(get('segments')).reshape(-1, 2).astype(
                    np.float64),
                scores=_np(get('scores')).reshape(-1).astype(np.float64),
                labels=_np(get('labels')).reshape(-1).astype(np.int64)))

    def merge_predictions(self, results: Sequence[dict],
                          class_names: Sequence[str]) -> dict:
        """Group by video, apply the one NMS of each video (clipping to the
        video before or after it, see ``clip``), name the labels."""
        grouped = defaultdict(list)
        for r in results:
            grouped[r['video_id']].append(r)
        merged = {}
        for vid, parts in grouped.items():
            seg, score, label = (torch.from_numpy(np.concatenate(
                [p[k] for p in parts])) for k in ('segments', 'scores',
                                                  'labels'))
            durations = [p['duration'] for p in parts
                         if p.get('duration') is not None]
            duration = max(durations) if durations else None
            seg, score, label = self.merge_video(seg, score, label, duration)
            merged[str(vid)] = [
                dict(segment=[float(s[0]), float(s[1])], score=float(c),
                     label=class_names[int(lb)])
                for s, c, lb in zip(seg.tolist(), score.tolist(),
                                    label.tolist())]
        return merged

    def merge_video(self, segments: torch.Tensor, scores: torch.Tensor,
                    labels: torch.Tensor, duration: Optional[float] = None):
        """The merge of one video's detections (any units; ``duration`` in
        the same units, None: not clipped): optional rounding and clipping
        before, the NMS (or the best ``max_per_video``), clipping after,
        then the segments clipping left empty dropped (``drop_empty``).

        Returns:
            tuple[Tensor, Tensor, Tensor]: segments, scores, labels, best
            first.
        """
        if self.round_before_nms:
            segments, scores = segments.round(decimals=2), \
                scores.round(decimals=4)
        if self.clip == 'before' and duration is not None:
            segments = clip_segments(segments, duration)
        if self.nms is not None and len(scores):
            cfg = dict(max_num=self.max_per_video)
            cfg.update(self.nms)
            segments, scores, labels = segment_nms(segments, scores, labels,
                                                   **cfg)
        else:
            order = torch.argsort(-scores, stable=True)[:self.max_per_video]
            segments, scores, labels = (segments[order], scores[order],
                                        labels[order])
        if self.clip == 'after' and duration is not None:
            segments = clip_segments(segments, duration)
        if self.drop_empty and self.clip is not None and \
                duration is not None:
            keep = segments[:, 1] > segments[:, 0]
            segments, scores, labels = (segments[keep], scores[keep],
                                        labels[keep])
        return segments, scores, labels

    def ground_truth_file(self) -> str:
        """``ann_file``, else the evaluated dataset's annotation file."""
        path = self.ann_file or (self.dataset_meta or {}).get('ann_file')
        if not path:
            raise ValueError(
                'TALMetric has no ground truth: give it ann_file=... (an '
                'ActivityNet-style JSON), or evaluate a dataset whose '
                "metainfo names its annotation file ('ann_file', as "
                'TALDataset does)')
        return path

    def _drop_absent_classes(self, merged: dict, gt: dict, names: list,
                             ann_file: str, logger) -> dict:
        """Leave out predictions of dataset classes that have no ground
        truth in the evaluated subset, saying so."""
        present = set(class_names_of(gt))
        absent = [c for c in names if c not in present]
        if not absent:
            return merged
        counts = {c: 0 for c in absent}
        kept = {}
        for vid, preds in merged.items():
            kept[vid] = [p for p in preds if p['label'] not in counts]
            for p in preds:
                if p['label'] in counts:
                    counts[p['label']] += 1
        where = f'subset {self.subset!r} of ' if self.subset else ''
        msg = (f'{len(absent)} of the {len(names)} classes have no '
               f'ground-truth segment in {where}{ann_file} (absent from '
               f'this split, not unknown): {name_some(absent, counts)} '
               f'(their number of predictions); their '
               f'{sum(counts.values())} prediction(s) are left out and the '
               f'mAP is the mean over the {len(present)} classes present')
        # said once as a warning, then at info level (every validation)
        if getattr(self, '_absent_reported', False):
            logger.info(msg)
        else:
            logger.warning(msg)
            self._absent_reported = True
        return kept

    def compute_metrics(self, results: list) -> dict:
        """Merge per video and evaluate against the ground truth."""
        logger = MMLogger.get_current_instance()
        ann_file = self.ground_truth_file()
        gt = load_activitynet_json(ann_file, subset=self.subset,
                                   clip=self.clip_ground_truth)
        names = self.class_names or (self.dataset_meta or {}).get('classes') \
            or class_names_of(gt)
        merged = self.merge_predictions(results, list(names))
        if self.out_file:
            with open(self.out_file, 'w') as f:
                json.dump(dict(version='re2tal_mm', results=merged,
                               external_data={}), f)
        where = f'subset {self.subset!r} of ' if self.subset else ''
        missing = [v for v in gt if v not in merged]
        if missing:
            logger.warning(f'{len(missing)} of {len(gt)} video(s) of '
                           f'{where}{ann_file} have no prediction '
                           f'(their ground truth counts as missed): '
                           f'{name_some(missing)}')
        # said here: dropping absent classes may empty them
        warn_of_unseen_videos(gt, merged, logger)
        scored = self._drop_absent_classes(merged, gt, list(names),
                                           ann_file, logger)
        res = evaluate_detection(gt, scored, self.tiou_thresholds,
                                 protocol=self.protocol, logger=logger,
                                 warn_unseen_videos=False)
        logger.info(f'{self.protocol} protocol, {where}{ann_file}\n' +
                    format_ap_table(res, self.print_per_class))
        metrics = {f'mAP@{t:.2f}': m
                   for t, m in zip(res['tiou_thresholds'], res['mAP'])}
        metrics['average_mAP'] = res['average_mAP']
        if self.recall_top_k:
            rec = recall_metrics(topkx_recall(gt, scored,
                                              self.tiou_thresholds,
                                              self.recall_top_k))
            logger.info('Recall@kx: ' + ', '.join(
                f'{k} {100 * v:.2f}' for k, v in rec.items()))
            metrics.update(rec)
        return metrics

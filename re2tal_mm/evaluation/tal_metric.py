"""TALMetric: ActivityNet-protocol detection mAP, with per-video merging."""
import json
from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmaction.registry import METRICS
from re2tal_mm.datasets.annotations import (class_names_of,
                                            load_activitynet_json)
from re2tal_mm.structures import segment_nms
from .functional import (ANET_TIOU_THRESHOLDS, evaluate_detection,
                         format_ap_table)


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
    """Temporal action localization mAP (ActivityNet detection protocol).

    Predictions (segments in seconds, window offset already added) are grouped
    by ``video_id``; each video's predictions from all its windows are merged
    by one final NMS (:func:`segment_nms`), then evaluated against the ground
    truth read from ``ann_file`` (so every rank's samples are judged against
    the full subset, also in distributed evaluation).

    Args:
        ann_file (str): ActivityNet-style ground-truth JSON.
        subset (str | None): Subset evaluated (all videos if None).
        tiou_thresholds (Sequence[float]): Defaults to 0.5:0.05:0.95.
        nms (dict | None): Arguments of :func:`segment_nms` for the per-video
            merge (None: no NMS).
        max_per_video (int): Predictions kept per video after the merge.
        class_names (Sequence[str] | None): Label index -> name; defaults to
            ``dataset_meta['classes']``, else the sorted ground-truth labels.
        out_file (str | None): Dump the merged predictions here as an
            ActivityNet submission JSON.
        print_per_class (bool): Log the per-class AP table.
        collect_device (str): Device to collect results on.
        prefix (str | None): Metric name prefix.
    """
    default_prefix = 'tal'

    def __init__(self,
                 ann_file: str,
                 subset: Optional[str] = None,
                 tiou_thresholds: Sequence[float] = ANET_TIOU_THRESHOLDS,
                 nms: Optional[dict] = dict(method='soft', sigma=0.5,
                                            min_score=1e-3),
                 max_per_video: int = 200,
                 class_names: Optional[Sequence[str]] = None,
                 out_file: Optional[str] = None,
                 print_per_class: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = ann_file
        self.subset = subset
        self.tiou_thresholds = tuple(tiou_thresholds)
        self.nms = nms
        self.max_per_video = max_per_video
        self.class_names = class_names
        self.out_file = out_file
        self.print_per_class = print_per_class

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Keep each sample's video id and predictions (numpy)."""
        for sample in data_samples:
            pred = _get(sample, 'pred_instances')
            get = (pred.get if isinstance(pred, dict) else
                   lambda k: getattr(pred, k))
            self.results.append(dict(
                video_id=_get(sample, 'video_id'),
                segments=_np(get('segments')).reshape(-1, 2).astype(
                    np.float64),
                scores=_np(get('scores')).reshape(-1).astype(np.float64),
                labels=_np(get('labels')).reshape(-1).astype(np.int64)))

    def merge_predictions(self, results, class_names):
        """Group by video, apply the final NMS, name the labels."""
        grouped = defaultdict(list)
        for r in results:
            grouped[r['video_id']].append(r)
        merged = {}
        for vid, parts in grouped.items():
            seg = torch.from_numpy(np.concatenate([p['segments']
                                                   for p in parts]))
            score = torch.from_numpy(np.concatenate([p['scores']
                                                     for p in parts]))
            label = torch.from_numpy(np.concatenate([p['labels']
                                                     for p in parts]))
            if self.nms is not None and len(score):
                cfg = dict(max_num=self.max_per_video)
                cfg.update(self.nms)
                seg, score, label = segment_nms(seg, score, label, **cfg)
            else:
                order = torch.argsort(-score, stable=True)[:self.max_per_video]
                seg, score, label = seg[order], score[order], label[order]
            merged[str(vid)] = [
                dict(segment=[float(s[0]), float(s[1])], score=float(c),
                     label=class_names[int(lb)])
                for s, c, lb in zip(seg.tolist(), score.tolist(),
                                    label.tolist())]
        return merged

    def compute_metrics(self, results: list) -> dict:
        logger = MMLogger.get_current_instance()
        gt = load_activitynet_json(self.ann_file, subset=self.subset)
        names = self.class_names or (self.dataset_meta or {}).get('classes') \
            or class_names_of(gt)
        merged = self.merge_predictions(results, list(names))
        if self.out_file:
            with open(self.out_file, 'w') as f:
                json.dump(dict(version='re2tal_mm', results=merged,
                               external_data={}), f)
        res = evaluate_detection(gt, merged, self.tiou_thresholds)
        logger.info('\n' + format_ap_table(res, self.print_per_class))
        metrics = {f'mAP@{t:.2f}': m
                   for t, m in zip(res['tiou_thresholds'], res['mAP'])}
        metrics['average_mAP'] = res['average_mAP']
        return metrics

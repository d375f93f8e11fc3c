"""TALDataset: temporal action localization from videos or features."""
import math
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import MMLogger

from mmaction.datasets import BaseActionDataset
from mmaction.registry import DATASETS
from .annotations import class_names_of, load_activitynet_json, load_json


def sliding_window_offsets(duration, window_duration, overlap=0.25):
    """Offsets (s) of overlapping windows covering ``[0, duration]``.

    The last window ends at the video's end (or the video fits in one).
    """
    if window_duration <= 0:
        raise ValueError('window_duration must be > 0')
    if not 0 <= overlap < 1:
        raise ValueError('overlap must be in [0, 1)')
    if duration <= window_duration:
        return [0.0]
    step = window_duration * (1 - overlap)
    n = math.ceil((duration - window_duration) / step)
    offsets = [i * step for i in range(n)]
    offsets.append(duration - window_duration)
    return offsets


@DATASETS.register_module()
class TALDataset(BaseActionDataset):
    """Temporal action localization dataset (ActivityNet-style JSON).

    One sample per video, or in test mode with ``window_duration`` one sample
    per sliding window (each carrying its ``window_offset``); the pipeline
    (:class:`TALWindowSample` etc.) picks frames or feature steps.

    Args:
        ann_file (str): ActivityNet-style annotation JSON.
        pipeline (list): Processing pipeline.
        subset (str | Sequence[str] | None): Subset(s) used.
        classes (Sequence[str] | None): Class names (label = index). Default:
            the file's ``classes`` list if it has one, else the sorted labels
            of the whole annotation file. A label outside
            the list is an error naming it and its video.
        data_prefix (dict): ``dict(video=DIR)`` (video mode) or
            ``dict(feature=DIR)`` (feature mode).
        modality (str): ``'RGB'`` (video files) or ``'Feature'`` (``.npy``).
        suffix (str | None): File extension (default ``.mp4`` / ``.npy``).
        window_duration (float | None): Test-mode sliding window length (s).
        window_overlap (float): Overlap ratio of test windows.
        skip_missing (bool): Skip (and log) videos whose file is missing
            instead of raising.
        ignore_ambiguous (bool): Leave ``ambiguous`` segments out of samples.
        test_mode (bool): Test mode.
    """

    def __init__(self,
                 ann_file: str,
                 pipeline: List[Union[dict, Callable]],
                 subset: Optional[Union[str, Sequence[str]]] = None,
                 classes: Optional[Sequence[str]] = None,
                 data_prefix: dict = dict(video=''),
                 modality: str = 'RGB',
                 suffix: Optional[str] = None,
                 window_duration: Optional[float] = None,
                 window_overlap: float = 0.25,
                 skip_missing: bool = False,
                 ignore_ambiguous: bool = False,
                 test_mode: bool = False,
                 **kwargs) -> None:
        self.subset = subset
        self.suffix = suffix or ('.npy' if modality == 'Feature' else '.mp4')
        self.window_duration = window_duration
        self.window_overlap = window_overlap
        self.skip_missing = skip_missing
        self.ignore_ambiguous = ignore_ambiguous
        if classes is None:  # the file's own list, else its sorted labels
            classes = load_json(ann_file).get('classes') or class_names_of(
                load_activitynet_json(ann_file))
        self.classes = list(classes)
        metainfo = dict(classes=tuple(self.classes))
        metainfo.update(kwargs.pop('metainfo', None) or {})
        super().__init__(ann_file, pipeline, data_prefix=data_prefix,
                         modality=modality, test_mode=test_mode,
                         num_classes=len(self.classes), metainfo=metainfo,
                         **kwargs)

    def _file_of(self, video_id):
        key = 'feature' if self.modality == 'Feature' else 'video'
        root = self.data_prefix.get(key, '') or ''
        return osp.join(root, video_id + self.suffix)

    def load_data_list(self) -> List[dict]:
        """One entry per video (or per window in sliding-window test)."""
        database = load_activitynet_json(self.ann_file, self.subset,
                                         class_names=self.classes)
        index = {c: i for i, c in enumerate(self.classes)}
        data_list, missing = [], []
        for vid, info in database.items():
            path = self._file_of(vid)
            if not osp.isfile(path):
                missing.append(path)
                continue
            segs = np.array([a['segment'] for a in info['annotations']],
                            dtype=np.float32).reshape(-1, 2)
            labels = np.array([index[a['label']] for a in info['annotations']],
                              dtype=np.int64)
            amb = [] if self.ignore_ambiguous else info.get('ambiguous', [])
            entry = dict(video_id=vid, filename=path,
                         duration=float(info['duration']),
                         gt_segments=segs, gt_labels=labels,
                         test_mode=self.test_mode,
                         ignored_segments=np.array(amb, np.float32).reshape(
                             -1, 2))
            if info.get('fps'):
                entry['fps'] = float(info['fps'])
            if self.modality == 'Feature':
                entry['feature_path'] = path
            if self.test_mode and self.window_duration:
                for off in sliding_window_offsets(entry['duration'],
                                                  self.window_duration,
                                                  self.window_overlap):
                    data_list.append(dict(entry, window_offset=float(off),
                                          window_duration=float(
                                              self.window_duration)))
            else:
                data_list.append(entry)
        if missing:
            if not self.skip_missing:
                raise FileNotFoundError(
                    f'{len(missing)} file(s) of {self.ann_file} missing, '
                    f'first: {missing[0]} (use skip_missing=True to skip)')
            MMLogger.get_current_instance().warning(
                f'skipped {len(missing)} missing file(s): '
                f'{", ".join(missing[:20])}')
        return data_list

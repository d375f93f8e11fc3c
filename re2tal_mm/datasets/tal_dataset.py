"""TALDataset: temporal action localization from videos or features.

One concept, the dataset, with what decides which samples it yields (the
subset, the sliding test windows, the skip list and the policy for missing
or undecodable files): hence over 400 lines.
"""
import os.path as osp
from collections import Counter
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.fileio import join_path
from mmengine.logging import MMLogger
from mmengine.utils import is_abs

from re2tal_mm.structures.reporting import name_some

from mmaction.datasets import BaseActionDataset
from mmaction.registry import DATASETS
from .annotations import class_names_of, load_activitynet_json, load_json
from .windows import sliding_windows  # noqa: F401 - its old home
from .windows import WINDOW_COUNTS, check_windows, video_windows

#: Errors of a loading transform that ``skip_undecodable`` skips.
DECODE_ERRORS = (OSError, ValueError)

_FIX_HINT = ('run tools/data/check_dataset.py on the config and pass its '
             'skip_list.txt as the dataset\'s skip_list, or set '
             'skip_undecodable=True on the dataset')


def join_data_root(data_root: Optional[str],
                   path: Optional[str]) -> Optional[str]:
    """``path`` under ``data_root``, joined as MMEngine's ``BaseDataset``
    joins its ``ann_file`` and ``data_prefix`` (an absolute path or a URL
    unchanged).

    Args:
        data_root (str, optional): The dataset's ``data_root``.
        path (str, optional): A path of the dataset's config.

    Returns:
        str, optional: The joined path (``path`` itself without either).
    """
    if not data_root or not path or is_abs(path):
        return path
    return join_path(data_root, path)


def read_skip_list(skip_list: Union[str, Sequence[str]]) -> List[str]:
    """Video ids of a skip list (as written by ``check_dataset.py``).

    Args:
        skip_list (str | Sequence[str]): A text file, one video id per line
            (blank lines and ``#`` comments ignored), or the ids themselves.

    Returns:
        list[str]: The ids, in order.
    """
    if not isinstance(skip_list, str):
        return [str(v) for v in skip_list]
    if not osp.isfile(skip_list):
        raise FileNotFoundError(
            f'skip_list file not found: {skip_list} (tools/data/'
            'check_dataset.py writes one: <out-dir>/skip_list.txt)')
    with open(skip_list, encoding='utf-8') as f:
        ids = [line.split('#', 1)[0].strip() for line in f]
    return [v for v in ids if v]


def is_loading_transform(transform) -> bool:
    """Whether ``transform`` reads a file (``*Init``, ``*Decode``,
    ``Load*``: ``TALVideoInit``, ``DecordDecode``, ``LoadTALFeature``...)."""
    name = type(transform).__name__
    return name.endswith(('Init', 'Decode')) or name.startswith('Load')


@DATASETS.register_module()
class TALDataset(BaseActionDataset):
    """Temporal action localization dataset (ActivityNet-style JSON).

    One sample per video, or in test mode with ``sliding_window`` one sample
    per sliding window; the pipeline (:class:`TALWindowSample` etc.) picks
    frames or feature steps.

    Sliding test windows are the windows of the pipeline's
    ``TALWindowSample(mode='window')``: ``num_steps`` steps of its grid
    (frames every ``frame_stride``, or at ``target_fps``; feature steps),
    counted and placed on each video's own grid (see
    :mod:`re2tal_mm.datasets.windows`): window ``i`` starts at step ``i *
    int(num_steps * (1 - window_overlap))``, the last ends at the video's
    last step, whatever its fps. The number of steps of a video comes from
    its header (frame count and fps, read through the pipeline's
    ``TALVideoInit``, no frame decoded) or its feature file's (``.npy``
    header and manifest), as ``TALWindowSample`` will see it; a video whose
    header cannot be read is counted from its annotation's ``duration`` x
    ``fps`` (one window if it has no fps), with a warning naming it.

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
        window_duration (float, optional): Deprecated. Set: as
            ``sliding_window=True`` (unless ``sliding_window`` is given),
            with a warning; its value is not used: the window length is the
            pipeline's ``TALWindowSample`` window, in steps of each video.
            Defaults to None.
        window_overlap (float): Overlap ratio of adjacent test windows, in
            ``[0, 1)``. Defaults to 0.25.
        skip_missing (bool): Skip (and log) videos whose file is missing
            instead of raising.
        skip_list (str | Sequence[str] | None): Videos left out: a file of
            video ids, one per line (the ``skip_list.txt`` of
            ``tools/data/check_dataset.py``), or the ids. Their number and
            first names are logged. In test mode their ground truth still
            counts (as missed) in ``TALMetric``. Defaults to None.
        skip_undecodable (bool): When a loading transform of the pipeline
            (``*Init``, ``*Decode``, ``Load*``, see
            :func:`is_loading_transform`) raises an ``OSError`` or
            ``ValueError``, log the video and its error as a warning and
            let MMEngine's ``BaseDataset.__getitem__`` fetch another sample
            in its place (up to ``max_refetch`` tries). In test mode the
            failed sample is logged as an error and replaced by a stand-in
            (another sample, marked ``skipped=True`` in its metainfo) that
            ``TALMetric`` leaves out: the metric counts the failed video, or
            window, as without predictions.
            Each skip is a log line (through MMEngine's current logger,
            also from dataloader workers) with the video and a running count
            over all workers; :attr:`num_skipped` holds that count. There is
            no per-epoch summary line: an epoch's skips are the lines
            between its ``Epoch(train)`` lines. Defaults to False (the error
            stops the run, with a note naming the video and these options).
        min_segment_ratio (float): Leave out the ground-truth segments not
            longer than this fraction of their video's duration, and the
            training videos left without any (OpenTAD's ``filter_gt`` on
            ActivityNet-1.3: 0.01). The metric still reads the whole
            annotation file. Defaults to 0 (all kept).
        class_agnostic (bool): Every ground-truth label is 0, for a
            one-class (actionness) head; ``classes`` stay the dataset's, so
            that predictions relabelled by an external classifier are named
            by them. Defaults to False.
        ignore_ambiguous (bool): Leave ``ambiguous`` segments out of samples.
        test_mode (bool): Test mode.
        sliding_window (bool, optional): Test mode: one sample per sliding
            window (above). Defaults to None: as ``window_duration`` says
            (windows if it is set), else False. Given, it wins over
            ``window_duration``.
        window_count (str): How many windows a video gets: ``'cover'``
            (as many as cover it, none repeated) or ``'opentad'``
            (OpenTAD's count, ``max(1, steps // stride)`` stopping at the
            first window past the end: with an overlap below 0.5 the tail
            of a video can be left without a window, from 0.5 the last
            window can repeat the one before); see
            :func:`~re2tal_mm.datasets.windows.window_starts`. Defaults to
            ``'cover'``.
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
                 skip_list: Optional[Union[str, Sequence[str]]] = None,
                 skip_undecodable: bool = False,
                 ignore_ambiguous: bool = False,
                 test_mode: bool = False,
                 sliding_window: Optional[bool] = None,
                 window_count: str = 'cover',
                 min_segment_ratio: float = 0.,
                 class_agnostic: bool = False,
                 **kwargs) -> None:
        self.subset = subset
        self.suffix = suffix or ('.npy' if modality == 'Feature' else '.mp4')
        if window_count not in WINDOW_COUNTS:
            raise ValueError(f'window_count must be one of {WINDOW_COUNTS}, '
                             f'got {window_count!r}')
        if not 0 <= window_overlap < 1:
            raise ValueError('window_overlap must be in [0, 1), got '
                             f'{window_overlap}')
        self.window_duration = window_duration
        self.sliding_window = bool(window_duration) \
            if sliding_window is None else bool(sliding_window)
        self.window_overlap = window_overlap
        self.window_count = window_count
        self.skip_missing = skip_missing
        self.skip_list = skip_list
        self.skip_ids = [] if skip_list is None else read_skip_list(skip_list)
        self.skip_undecodable = skip_undecodable
        self.ignore_ambiguous = ignore_ambiguous
        if not 0 <= min_segment_ratio < 1:
            raise ValueError('min_segment_ratio must be in [0, 1), got '
                             f'{min_segment_ratio}')
        self.min_segment_ratio = min_segment_ratio
        self.class_agnostic = class_agnostic
        # skips per dataloader worker (slot 0: the main process), in shared
        # memory so that the main process sees the workers' counts
        self._skip_counts = torch.zeros(65, dtype=torch.int64).share_memory_()
        self.skipped_videos = Counter()  # of this process only
        if classes is None:  # the file's own list, else its sorted labels
            path = join_data_root(kwargs.get('data_root'), ann_file)
            classes = load_json(path).get('classes') or class_names_of(
                load_activitynet_json(path, clip=False))
        self.classes = list(classes)
        metainfo = dict(classes=tuple(self.classes))
        metainfo.update(kwargs.pop('metainfo', None) or {})
        super().__init__(ann_file, pipeline, data_prefix=data_prefix,
                         modality=modality, test_mode=test_mode,
                         num_classes=len(self.classes), metainfo=metainfo,
                         **kwargs)
        # for TALMetric without an ann_file: the ground truth of the data it
        # evaluates (data_root applied). Not passed in metainfo above:
        # MMEngine reads a string naming an existing file as a list file.
        self._metainfo['ann_file'] = self.ann_file

    def _training_segments(self, info: dict) -> Optional[list]:
        """A video's annotations without those shorter than
        ``min_segment_ratio`` of its duration; None for a training video
        left without any (left out, as OpenTAD's ``filter_gt`` does)."""
        annos = info['annotations']
        if self.min_segment_ratio <= 0:
            return annos
        least = self.min_segment_ratio * float(info['duration'])
        kept = [a for a in annos if a['segment'][1] - a['segment'][0] > least]
        if annos and not kept and not self.test_mode:
            return None
        return kept

    def _file_of(self, video_id):
        key = 'feature' if self.modality == 'Feature' else 'video'
        root = self.data_prefix.get(key, '') or ''
        return osp.join(root, video_id + self.suffix)

    def load_data_list(self) -> List[dict]:
        """One entry per video (or per window in sliding-window test)."""
        logger = MMLogger.get_current_instance()
        database = load_activitynet_json(self.ann_file, self.subset,
                                         class_names=self.classes,
                                         logger=logger)
        index = {c: i for i, c in enumerate(self.classes)}
        data_list, missing, short_only = [], [], []
        if self.test_mode and self.sliding_window:
            check_windows(getattr(self.pipeline, 'transforms', []),
                          self.window_duration)
        skip = set(self.skip_ids)
        left_out = [vid for vid in database if vid in skip]
        for vid, info in database.items():
            if vid in skip:
                continue
            path = self._file_of(vid)
            if not osp.isfile(path):
                missing.append(path)
                continue
            annos = self._training_segments(info)
            if annos is None:
                short_only.append(vid)
                continue
            segs = np.array([a['segment'] for a in annos],
                            dtype=np.float32).reshape(-1, 2)
            labels = np.array([0 if self.class_agnostic else index[a['label']]
                               for a in annos], dtype=np.int64)
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
            if self.test_mode and self.sliding_window:
                for win in video_windows(entry, self.pipeline.transforms,
                                         self.window_overlap,
                                         self.window_count):
                    data_list.append(dict(entry, **win))
            else:
                data_list.append(entry)
        if missing:
            if not self.skip_missing:
                raise FileNotFoundError(
                    f'{len(missing)} file(s) of {self.ann_file} missing, '
                    f'first: {missing[0]} (use skip_missing=True to skip, '
                    'or list them in the dataset\'s skip_list: tools/data/'
                    'check_dataset.py writes one)')
            logger.warning(
                f'skipped {len(missing)} missing file(s): '
                f'{name_some(missing, limit=20, quote=False)}')
        if short_only:
            logger.info(
                f'min_segment_ratio={self.min_segment_ratio}: '
                f'{len(short_only)} training video(s) of {self.ann_file} '
                'have only shorter segments and are left out: '
                f'{name_some(short_only, quote=False)}')
        if self.skip_ids:
            self._log_skip_list(left_out, len(database), logger)
        if not data_list:
            where = f'subset {self.subset!r} of ' if self.subset else ''
            first = f' (first: {osp.abspath(missing[0])})' if missing \
                else ''
            raise ValueError(
                f'no video of {where}{self.ann_file} is left: '
                f'{len(database)} in it, {len(missing)} missing{first}, '
                f'{len(left_out)} in the skip_list; check data_prefix, '
                'suffix and skip_list')
        if not self.test_mode:
            self._log_absent_classes(data_list, logger)
        return data_list

    def _log_absent_classes(self, data_list, logger):
        seen = set()
        for entry in data_list:
            seen.update(int(i) for i in entry['gt_labels'])
        absent = [c for i, c in enumerate(self.classes) if i not in seen]
        if absent:
            where = f'subset {self.subset!r} of ' if self.subset else ''
            logger.warning(
                f'{len(absent)} of the {len(self.classes)} classes have no '
                f'segment in {where}{self.ann_file} (as loaded: clipped, '
                f'skipped videos left out), so training never sees them: '
                f'{name_some(absent, quote=False)}')

    def _log_skip_list(self, left_out, total, logger):
        where = f'subset {self.subset!r} of ' if self.subset else ''
        source = self.skip_list if isinstance(self.skip_list, str) else \
            'the skip_list'
        msg = (f'left out {len(left_out)} of {total} video(s) of '
               f'{where}{self.ann_file} listed in {source}')
        if left_out:
            msg += f': {name_some(left_out, quote=False)}'
        others = len(self.skip_ids) - len(left_out)
        if others:
            msg += f' ({others} other id(s) of the list are not in it)'
        if self.test_mode and left_out:
            msg += ('; a metric reading the ground truth from the '
                    'annotation file counts them as videos without '
                    'predictions')
        logger.warning(msg)

    @property
    def num_skipped(self) -> int:
        """Samples skipped by ``skip_undecodable`` so far, summed over the
        main process and its dataloader workers (while they live: the count
        of non-persistent workers is kept, their names are not)."""
        return int(self._skip_counts.sum())

    def _count_skip(self) -> int:
        info = torch.utils.data.get_worker_info()
        slot = 0 if info is None else 1 + info.id % (
            len(self._skip_counts) - 1)
        self._skip_counts[slot] += 1
        return self.num_skipped

    def _pipeline_or_none(self, idx: int, record: bool = True):
        """The pipeline's output, or None when a loading transform fails
        with :data:`DECODE_ERRORS` and ``skip_undecodable`` is set (logged
        if ``record``); without it the error gets a note naming the video.
        """
        results = self.get_data_info(idx)
        vid, filename = results.get('video_id'), results.get('filename')
        window = results.get('window_offset')
        if not hasattr(self.pipeline, 'transforms'):  # not a Compose
            return self.pipeline(results)
        for transform in self.pipeline.transforms:
            try:
                results = transform(results)
            except DECODE_ERRORS as err:
                if not is_loading_transform(transform):
                    raise
                if not self.skip_undecodable:
                    note = (f'{type(self).__name__}: video {vid} '
                            f'({filename}) cannot be loaded by '
                            f'{type(transform).__name__}; to go on without '
                            f'it, {_FIX_HINT}.')
                    if hasattr(err, 'add_note'):  # Python >= 3.11
                        err.add_note(note)
                    else:  # pragma: no cover
                        MMLogger.get_current_instance().error(note)
                    raise
                if record:
                    self._record_skip(vid, filename, window, transform, err)
                return None
            if results is None:
                return None
        return results

    def _record_skip(self, vid, filename, window, transform, err):
        self.skipped_videos[vid] += 1
        count = self._count_skip()
        what = f'video {vid} ({filename})' + (
            '' if window is None else f' window at {window:.2f} s')
        reason = (f'{type(transform).__name__} failed: '
                  f'{type(err).__name__}: {err}')
        logger = MMLogger.get_current_instance()
        if self.test_mode:
            logger.error(
                f'skip_undecodable: {what} left out of the evaluation: '
                f'{reason}. A stand-in sample without predictions takes its '
                'place; the metric counts this video (window) as without '
                f'predictions ({count} sample(s) skipped so far)')
        else:
            logger.warning(
                f'skip_undecodable: skipped {what}: {reason}; another '
                f'sample replaces it ({count} sample(s) skipped so far by '
                'all dataloader workers; by this one: '
                f'{name_some(self.skipped_videos, quote=False)})')

    def prepare_data(self, idx: int) -> Optional[dict]:
        """The pipeline's output, None if it could not load the sample
        (with ``skip_undecodable``: MMEngine's ``__getitem__`` then fetches
        another one)."""
        return self._pipeline_or_none(idx)

    def __getitem__(self, idx: int) -> dict:
        """MMEngine's ``__getitem__``; in test mode with
        ``skip_undecodable`` a sample that cannot be loaded is replaced by a
        stand-in without predictions (see the class docstring)."""
        if not (self.test_mode and self.skip_undecodable):
            return super().__getitem__(idx)
        if not self._fully_initialized:
            self.full_init()
        data = self.prepare_data(idx)
        if data is not None:
            return data
        for step in range(1, min(self.max_refetch, len(self) - 1) + 1):
            data = self._pipeline_or_none((idx + step) % len(self),
                                          record=False)
            if data is not None:
                # another video's sample: marked, so that TALMetric drops
                # it (none of its detections may reach the evaluation)
                data['data_samples'].set_metainfo(dict(
                    skipped=True, stand_in_for=self.get_data_info(
                        idx)['video_id']))
                return data
        raise IOError(f'{type(self).__name__}: no sample of {self.ann_file} '
                      'could be loaded to stand in for a skipped one')

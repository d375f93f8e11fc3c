"""Transforms missing from MMAction2 for temporal action localization.

A video pipeline reads ``TALVideoInit -> TALWindowSample -> TALVideoDecode ->
(MMAction2 Resize / CenterCrop / Flip ...) -> FormatShape -> PackTALInputs``;
a feature pipeline ``LoadTALFeature -> TALWindowSample -> PackTALInputs``
(``LoadTALFeature`` lives in :mod:`.feature_loading`).
"""
import logging
from typing import List, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmengine.structures import InstanceData

from mmaction.datasets.transforms import DecordInit
from mmaction.registry import TRANSFORMS
from mmaction.structures import ActionDataSample
from .feature_loading import LoadTALFeature  # noqa: F401 - its old home
from .video_reader import PyAVVideoReader


@TRANSFORMS.register_module()
class TALVideoInit(BaseTransform):
    """Open a video lazily with decord, PyAV as fallback.

    Reads the container's metadata only, no frame: sets ``video_reader`` (a
    decord ``VideoReader`` or a :class:`PyAVVideoReader`, both decoding
    frames only when :class:`TALVideoDecode` asks for them),
    ``total_frames``, ``avg_fps`` and ``decode_backend``. A file that no
    backend can open is an ``IOError`` naming it.

    Args:
        backends (Sequence[str]): Backends tried in order, among
            ``'decord'`` and ``'pyav'``. Defaults to ``('decord', 'pyav')``.
        num_threads (int): Decoding threads. Defaults to 1.
        io_backend (str): File backend of decord: ``'disk'`` opens the file
            by its path; any other reads the whole file into memory through
            MMAction2's ``DecordInit`` (PyAV reads local files only).
            Defaults to ``'disk'``.
        **kwargs: File client arguments of ``DecordInit``.
    """

    BACKENDS = ('decord', 'pyav')

    def __init__(self, backends: Sequence[str] = BACKENDS,
                 num_threads: int = 1, io_backend: str = 'disk',
                 **kwargs) -> None:
        self.backends = tuple(backends)
        unknown = set(self.backends) - set(self.BACKENDS)
        if unknown or not self.backends:
            raise ValueError(f'backends must be among {self.BACKENDS}, got '
                             f'{self.backends}')
        self.num_threads = num_threads
        self.io_backend = io_backend
        self._decord = DecordInit(io_backend=io_backend,
                                  num_threads=num_threads, **kwargs)

    def _open(self, backend: str, filename: str):
        if backend == 'pyav':
            return PyAVVideoReader(filename, self.num_threads)
        if self.io_backend != 'disk':
            return self._decord._get_video_reader(filename)
        import decord
        return decord.VideoReader(filename, num_threads=self.num_threads)

    def transform(self, results: dict) -> dict:
        """Add the reader and the metadata of ``results['filename']``."""
        errors = []
        for backend in self.backends:
            try:
                reader = self._open(backend, results['filename'])
                if len(reader) <= 0:
                    raise ValueError('no frames')
                results.update(video_reader=reader,
                               total_frames=len(reader),
                               avg_fps=float(reader.get_avg_fps()),
                               decode_backend=backend)
                return results
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(f'{backend}: {err}')
        raise IOError(f'cannot decode video {results["filename"]} '
                      f'({"; ".join(errors)})')


@TRANSFORMS.register_module()
class TALVideoDecode(BaseTransform):
    """Decode ``frame_inds`` with the reader of :class:`TALVideoInit`.

    Only the requested frames are decoded (and held); the reader is dropped
    from ``results`` (set to None) as MMAction2's ``DecordDecode`` does. A
    frame that cannot be decoded is an ``IOError`` naming the file.

    Args:
        frames_per_call (int): decord only: frames asked of decord per call,
            each batch copied into the window's array as it comes, so decord's
            batch and its numpy copy do not both hold the whole window (the
            frames are the same). 0: the whole window in one call, as
            MMAction2's ``DecordDecode``. Defaults to 16.
    """

    def __init__(self, frames_per_call: int = 16) -> None:
        self.frames_per_call = frames_per_call

    def _decord_frames(self, reader, inds: np.ndarray) -> List[np.ndarray]:
        step = self.frames_per_call or len(inds)
        out = None
        for k in range(0, len(inds), step):
            part = reader.get_batch(inds[k:k + step]).asnumpy()
            if out is None:
                out = np.empty((len(inds), ) + part.shape[1:], part.dtype)
            out[k:k + len(part)] = part
            del part
        return list(out)

    def transform(self, results: dict) -> dict:
        """Set ``imgs``, ``original_shape`` and ``img_shape``."""
        inds = np.asarray(results['frame_inds']).reshape(-1)
        if np.ndim(results['frame_inds']) != 1:
            results['frame_inds'] = inds
        reader = results['video_reader']
        try:
            if results.get('decode_backend', 'decord') == 'decord':
                imgs = self._decord_frames(reader, inds)
            else:
                imgs = reader.get_batch(inds)
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 - decord's errors vary
            raise IOError(f'cannot decode frames {inds.min()}..{inds.max()} '
                          f'of {results.get("filename")}: {err}') from err
        results['video_reader'] = None
        results['imgs'] = imgs
        results['original_shape'] = results['img_shape'] = imgs[0].shape[:2]
        return results


RESIZE_SAMPLINGS = ('start', 'center')


def resize_indices(total: int, num: int, sampling: str = 'start'
                   ) -> np.ndarray:
    """``num`` indices of ``total`` base steps, one per equal bin: the
    bin's first step (``'start'``) or its centre rounded to the nearest
    step, as OpenTAD computes it (``'center'``)."""
    if sampling == 'start':
        return np.floor(np.arange(num) * total / num).astype(np.int64)
    stride = total / num
    # np.arange exactly as OpenTAD calls it: its float steps decide the
    # rounding of centres that fall on a half step
    centres = np.arange(stride / 2 - 0.5, total + stride / 2 - 0.5,
                        stride)[:num]
    return np.clip(centres, 0, total - 1).round().astype(np.int64)


@TRANSFORMS.register_module()
class TALWindowSample(BaseTransform):
    """Choose a temporal window and the frames (or feature steps) in it.

    Grid position ``i`` of the sample stands for the time
    ``window_offset + i * grid_stride / fps`` (see ``TemporalGrid``). The
    first ``valid_steps`` (also ``num_frames`` or
    ``num_feature_steps``) steps are real; the rest, past the video's end,
    repeat its last frame / step.

    Args:
        num_steps (int): Steps (frames or features) per sample.
        mode (str): ``'window'``: a window of ``num_steps`` steps at the base
            stride (random in training; in test at the sample's
            ``window_start`` step, set by ``TALDataset(sliding_window=True)``
            / ``localize_video`` from :func:`sliding_windows`, else at its
            ``window_offset`` s, else at the video's start); ``'resize'``:
            the whole video resampled to ``num_steps`` steps.
        target_fps (float | None): Video mode: sample frames at this rate.
        frame_stride (int): Video mode: sample every ``frame_stride`` frames
            (when ``target_fps`` is None).
        min_action_ratio (float): Training windows must keep at least this
            fraction of some action (when the video has actions). Defaults
            to 0.5 (OpenTAD's Re2TAL recipes: 0.75, their ``trunc_thresh``).
        max_tries (int): Random windows tried before taking the best one.
        partial_actions (bool): Training windows keep every action that
            overlaps them, clipped; False keeps only those of which the
            window holds at least ``min_action_ratio`` (OpenTAD's
            ``random_trunc``). Defaults to True.
        crop_ratio (tuple[float, float], optional): Training: a video not
            longer than the window is cut to a random length in
            ``[lo, hi]`` times its own (then placed as a window; the rest is
            padding), OpenTAD's ``crop_ratio`` ((0.9, 1.0) in its THUMOS
            recipes). Defaults to None (short videos are taken whole).
        resize_sampling (str): ``'resize'`` mode: which frame of each of
            the ``num_steps`` equal bins is taken: ``'start'`` (the first,
            at the time grid position ``i`` stands for) or ``'center'``
            (the middle one, rounded: OpenTAD's ``LoadFrames(method=
            'resize')``, half a bin after the time its position ``i`` stands
            for; its ActivityNet checkpoints were trained so). Defaults to
            ``'start'``.
        test_mode (bool): Deterministic windows (also when the dataset marks
            the sample ``test_mode``).
    """

    def __init__(self, num_steps, mode='window', target_fps=None,
                 frame_stride=1, min_action_ratio=0.5, max_tries=50,
                 test_mode=False, partial_actions=True, crop_ratio=None,
                 resize_sampling='start'):
        assert mode in ('window', 'resize'), mode
        if resize_sampling not in RESIZE_SAMPLINGS:
            raise ValueError(f'resize_sampling must be one of '
                             f'{RESIZE_SAMPLINGS}, got {resize_sampling!r}')
        self.resize_sampling = resize_sampling
        self.num_steps = num_steps
        self.mode = mode
        self.target_fps = target_fps
        self.frame_stride = frame_stride
        self.min_action_ratio = min_action_ratio
        self.max_tries = max_tries
        self.test_mode = test_mode
        self.partial_actions = partial_actions
        self.crop_ratio = None if crop_ratio is None else tuple(crop_ratio)

    def grid_of(self, results: dict) -> Tuple[float, float, int]:
        """The grid this transform samples ``results`` on.

        Args:
            results (dict): A video's metadata (``total_frames`` and
                ``avg_fps`` of the container, else the annotation's
                ``fps``) or a feature file's (``total_steps``, ``fps``,
                ``feature_stride``, from :class:`LoadTALFeature`).

        Returns:
            tuple[float, float, int]: The fps, the base stride (frames per
            step: ``frame_stride``, or ``round(fps / target_fps)``; the
            features' stride) and the number of base steps (features, or
            ``ceil(total_frames / stride)`` sampled frames).
        """
        if 'total_steps' in results:  # features
            return (results['fps'], results['feature_stride'],
                    results['total_steps'])
        fps = results.get('avg_fps') or results.get('fps')
        if not fps:
            raise ValueError(f'{results.get("filename")}: no fps (neither '
                             'the container nor the annotation has one)')
        stride = (max(1, round(fps / self.target_fps))
                  if self.target_fps else self.frame_stride)
        total = int(np.ceil(results['total_frames'] / stride))
        return float(fps), stride, total

    def _window_start(self, results, total):
        """Start of a sliding test window of :func:`sliding_windows`: its
        ``window_start`` step (one ending at the end still does if the
        video has another length now)."""
        n, start = self.num_steps, results['window_start']
        planned = results.get('window_total_steps', total)
        if planned != total:
            print_log(
                f'{results.get("filename")}: its test windows were counted '
                f'for {planned} steps but it has {total} now (was its '
                'header unreadable when the dataset was built?); windows '
                'may overlap more or leave a gap', logger='current',
                level=logging.WARNING)
            if start + n >= planned:
                start = total - n
        return max(0, min(start, total - n))

    def _pick_start(self, results, step_s, total):
        n = self.num_steps
        if 'window_start' in results:  # sliding-window test sample
            return self._window_start(results, total)
        if 'window_offset' in results:  # a window given in seconds
            start = int(round(results['window_offset'] / step_s))
            return max(0, min(start, total - n))
        if results.get('test_mode', self.test_mode) or total <= n:
            return 0
        return self._random_start(results, step_s, total, n)

    def _crop_length(self, results, total):
        """Training length of a video not longer than the window."""
        n = self.num_steps
        if (self.crop_ratio is None or total > n or 'window_start' in
                results or results.get('test_mode', self.test_mode)):
            return None
        lo = max(round(self.crop_ratio[0] * total), 1)
        hi = min(round(self.crop_ratio[1] * total), total)
        length = np.random.randint(lo, hi + 1) if hi >= lo else total
        return length if length < total else None

    def _random_start(self, results, step_s, total, n):
        segs = results['gt_segments']
        best, best_keep = 0, -1.0
        for _ in range(self.max_tries):
            start = np.random.randint(0, total - n + 1)
            if not len(segs):
                return start
            lo, hi = start * step_s, (start + n) * step_s
            inter = (np.minimum(segs[:, 1], hi) -
                     np.maximum(segs[:, 0], lo)).clip(min=0)
            lengths = np.maximum(segs[:, 1] - segs[:, 0], 1e-6)
            keep = float((inter / lengths).max())
            if keep >= self.min_action_ratio:
                return start
            if keep > best_keep:
                best, best_keep = start, keep
        return best

    def transform(self, results):
        fps, stride, total = self.grid_of(results)
        n = self.num_steps
        crop = None
        if self.mode == 'resize':
            grid_stride = stride * total / n
            idx = resize_indices(total, n, self.resize_sampling)
            offset = 0.0
        else:
            grid_stride = stride
            crop = self._crop_length(results, total)
            start = self._pick_start(results, stride / fps, total) \
                if crop is None else self._random_start(
                    results, stride / fps, total, crop)
            idx = start + np.arange(n)
            offset = start * stride / fps
        end = total if crop is None else start + crop
        valid = int(np.clip(end - idx[0], 0, n)) if self.mode == 'window' \
            else n
        idx = np.clip(idx, 0, end - 1)
        win_dur = n * grid_stride / fps
        if results.get('window_duration', 0) > win_dur + 1e-3:
            raise ValueError(
                f'dataset windows of {results["window_duration"]} s are '
                f'longer than the {n} sampled steps ({win_dur:.3f} s): frames '
                'would be skipped; raise num_steps or shorten the windows')
        if 'feature' in results:
            results['feature'] = results['feature'][idx]
        else:
            results['frame_inds'] = np.minimum(
                idx * stride, results['total_frames'] - 1).astype(np.int64)
            results['clip_len'], results['num_clips'] = n, 1
            results['frame_interval'] = stride
        lo, hi = offset, min(offset + valid * grid_stride / fps
                             if crop is not None else offset + win_dur,
                             results['duration'])
        segs = results['gt_segments'].reshape(-1, 2)
        clipped = np.stack([segs[:, 0].clip(lo, hi), segs[:, 1].clip(lo, hi)],
                           1) if len(segs) else segs
        keep = clipped[:, 1] > clipped[:, 0]
        if not self.partial_actions and len(segs) and not results.get(
                'test_mode', self.test_mode):
            held = (clipped[:, 1] - clipped[:, 0]) / np.maximum(
                segs[:, 1] - segs[:, 0], 1e-6)
            keep &= held >= self.min_action_ratio
        results['gt_segments'] = clipped[keep].astype(np.float32)
        results['gt_labels'] = results['gt_labels'][keep]
        results.update(fps=fps, window_offset=float(offset),
                       window_duration=float(win_dur),
                       grid_stride=float(grid_stride), num_steps=n,
                       valid_steps=valid)
        # real (not padded) frames / feature steps the sample holds
        results['num_feature_steps' if 'feature' in results else
                'num_frames'] = valid
        return results


@TRANSFORMS.register_module()
class PackTALInputs(BaseTransform):
    """Pack a TAL sample into ``inputs`` and an ``ActionDataSample``.

    ``inputs``: the formatted frames (``imgs`` after ``FormatShape``) or the
    feature as a ``C x T`` tensor. ``gt_instances``: ``segments`` (float
    N x 2, seconds, video clock) and ``labels`` (long N); ambiguous regions,
    if any, in ``ignored_instances.segments``.
    """
    META_KEYS = ('video_id', 'duration', 'fps', 'window_offset',
                 'window_duration', 'num_steps', 'valid_steps',
                 'num_frames', 'num_feature_steps', 'grid_stride',
                 'grid_center', 'filename', 'img_shape')

    def __init__(self, meta_keys=META_KEYS):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results):
        if 'imgs' in results:
            imgs = results['imgs']
            inputs = torch.from_numpy(np.ascontiguousarray(
                np.stack(imgs) if isinstance(imgs, list) else imgs))
        else:
            inputs = torch.from_numpy(
                np.ascontiguousarray(results['feature'].T))
        sample = ActionDataSample()
        sample.gt_instances = InstanceData(
            segments=torch.as_tensor(results['gt_segments'],
                                     dtype=torch.float32).reshape(-1, 2),
            labels=torch.as_tensor(results['gt_labels'], dtype=torch.long))
        if len(results.get('ignored_segments', ())):
            sample.ignored_instances = InstanceData(segments=torch.as_tensor(
                results['ignored_segments'], dtype=torch.float32))
        meta = {k: results[k] for k in self.meta_keys if k in results}
        meta.setdefault('grid_center', 0.0)
        sample.set_metainfo(meta)
        return dict(inputs=inputs, data_samples=sample)

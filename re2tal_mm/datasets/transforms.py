"""Transforms missing from MMAction2 for temporal action localization.

A video pipeline reads ``TALVideoInit -> TALWindowSample -> TALVideoDecode ->
(MMAction2 Resize / CenterCrop / Flip ...) -> FormatShape -> PackTALInputs``;
a feature pipeline ``LoadTALFeature -> TALWindowSample -> PackTALInputs``.
"""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData

from mmaction.datasets.transforms import DecordDecode, DecordInit
from mmaction.registry import TRANSFORMS
from mmaction.structures import ActionDataSample


@TRANSFORMS.register_module()
class TALVideoInit(BaseTransform):
    """Open a video with decord (MMAction2's ``DecordInit``), PyAV fallback.

    Sets ``video_reader``, ``total_frames``, ``avg_fps`` and
    ``decode_backend``.
    A file neither can open is an error naming it.
    """

    def __init__(self, backends=('decord', 'pyav')):
        self.backends = tuple(backends)
        self._decord = DecordInit()

    def transform(self, results):
        errors = []
        for backend in self.backends:
            try:
                if backend == 'decord':
                    results = self._decord.transform(results)
                    if results['total_frames'] <= 0:
                        raise ValueError('no frames')
                else:
                    import av
                    container = av.open(results['filename'])
                    frames = [f.to_rgb().to_ndarray()
                              for f in container.decode(video=0)]
                    rate = container.streams.video[0].average_rate
                    container.close()
                    if not frames:
                        raise ValueError('no frames')
                    results['video_reader'] = frames
                    results['total_frames'] = len(frames)
                    results['avg_fps'] = float(rate) if rate else None
                results['decode_backend'] = backend
                return results
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(f'{backend}: {err}')
        raise IOError(f'cannot decode video {results["filename"]} '
                      f'({"; ".join(errors)})')


@TRANSFORMS.register_module()
class TALVideoDecode(BaseTransform):
    """Decode ``frame_inds`` with the backend that opened the video."""

    def __init__(self):
        self._decord = DecordDecode()

    def transform(self, results):
        if results.get('decode_backend', 'decord') == 'decord':
            return self._decord.transform(results)
        frames = results.pop('video_reader')
        imgs = [frames[i] for i in results['frame_inds']]
        results['video_reader'] = None
        results['imgs'] = imgs
        results['original_shape'] = results['img_shape'] = imgs[0].shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadTALFeature(BaseTransform):
    """Load a ``T x C`` ``.npy`` feature sequence.

    Args:
        feature_stride (float): Video frames between two feature steps.
        fps (float | None): Video fps, when the annotation gives none.
        center (float): Position of a step inside its stride (grid units).
    """

    def __init__(self, feature_stride=1.0, fps=None, center=0.0):
        self.feature_stride = feature_stride
        self.fps = fps
        self.center = center

    def transform(self, results):
        path = results.get('feature_path', results.get('filename'))
        try:
            feat = np.load(path)
        except (OSError, ValueError) as err:
            raise IOError(f'cannot load feature file {path}: {err}') from err
        if feat.ndim != 2:
            raise ValueError(f'{path}: expected a T x C array, got shape '
                             f'{feat.shape}')
        fps = results.get('fps') or self.fps
        if not fps:
            raise ValueError(f'{path}: no fps in the annotation; set '
                             'LoadTALFeature(fps=...)')
        results.update(feature=feat.astype(np.float32), fps=float(fps),
                       total_steps=feat.shape[0],
                       feature_stride=float(self.feature_stride),
                       grid_center=self.center)
        return results


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
            stride (random in training; at the sample's ``window_offset`` in
            test, whole video if it has none and fits); ``'resize'``: the
            whole video resampled to ``num_steps`` steps.
        target_fps (float | None): Video mode: sample frames at this rate.
        frame_stride (int): Video mode: sample every ``frame_stride`` frames
            (when ``target_fps`` is None).
        min_action_ratio (float): Training windows must keep at least this
            fraction of some action (when the video has actions).
        max_tries (int): Random windows tried before taking the best one.
        test_mode (bool): Deterministic windows (also when the dataset marks
            the sample ``test_mode``).
    """

    def __init__(self, num_steps, mode='window', target_fps=None,
                 frame_stride=1, min_action_ratio=0.5, max_tries=50,
                 test_mode=False):
        assert mode in ('window', 'resize'), mode
        self.num_steps = num_steps
        self.mode = mode
        self.target_fps = target_fps
        self.frame_stride = frame_stride
        self.min_action_ratio = min_action_ratio
        self.max_tries = max_tries
        self.test_mode = test_mode

    def _base(self, results):
        """(fps, base stride in frames, number of base steps)."""
        if 'feature' in results:
            return (results['fps'], results['feature_stride'],
                    results['total_steps'])
        fps = results.get('avg_fps') or results.get('fps')
        stride = (max(1, round(fps / self.target_fps))
                  if self.target_fps else self.frame_stride)
        total = int(np.ceil(results['total_frames'] / stride))
        return float(fps), stride, total

    def _pick_start(self, results, step_s, total):
        n = self.num_steps
        if 'window_offset' in results:  # sliding-window test sample
            start = int(round(results['window_offset'] / step_s))
            return max(0, min(start, total - n))
        if results.get('test_mode', self.test_mode) or total <= n:
            return 0
        segs = results['gt_segments']
        best, best_keep = 0, -1.0
        for _ in range(self.max_tries):
            start = np.random.randint(0, total - n + 1)
            if not len(segs):
                return start
            lo, hi = start * step_s, (start + n) * step_s
            inter = (np.minimum(segs[:, 1], hi) -
                     np.maximum(segs[:, 0], lo)).clip(min=0)
            keep = float((inter / np.maximum(segs[:, 1] - segs[:, 0],
                                              1e-6)).max())
            if keep >= self.min_action_ratio:
                return start
            if keep > best_keep:
                best, best_keep = start, keep
        return best

    def transform(self, results):
        fps, stride, total = self._base(results)
        n = self.num_steps
        if self.mode == 'resize':
            grid_stride = stride * total / n
            idx = np.floor(np.arange(n) * total / n).astype(np.int64)
            offset = 0.0
        else:
            grid_stride = stride
            start = self._pick_start(results, stride / fps, total)
            idx = start + np.arange(n)
            offset = start * stride / fps
        valid = int(np.clip(total - idx[0], 0, n)) if self.mode == 'window' \
            else n
        idx = np.clip(idx, 0, total - 1)
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
        lo, hi = offset, min(offset + win_dur, results['duration'])
        segs = results['gt_segments'].reshape(-1, 2)
        clipped = np.stack([segs[:, 0].clip(lo, hi), segs[:, 1].clip(lo, hi)],
                           1) if len(segs) else segs
        keep = clipped[:, 1] > clipped[:, 0]
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

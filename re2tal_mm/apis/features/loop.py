"""The extraction loop: one video's clips through the extractor, a batch
at a time, with a cache of the decoded frames; the settings that determine
the features; the videos to extract and each process's share of them.
"""
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .clips import (TEMPORAL_POOLS, clip_frame_indices, clip_starts,
                    default_stride, feature_grid, resize_crop)
from .extractor import BackboneFeatures

VIDEO_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v',
                    '.mpg', '.mpeg', '.flv', '.wmv', '.3gp')


class _FrameCache:
    """Decoded, resized frames of a video, the latest batch's kept (clips
    of consecutive batches overlap)."""

    def __init__(self, opened: dict, size: Optional[int]) -> None:
        from re2tal_mm.datasets.transforms import TALVideoDecode
        self.opened, self.size = opened, size
        self.decode = TALVideoDecode()
        self.frames: Dict[int, np.ndarray] = {}

    def get(self, inds: np.ndarray) -> np.ndarray:
        wanted = sorted(set(int(i) for i in inds.reshape(-1)))
        new = [i for i in wanted if i not in self.frames]
        kept = {i: self.frames[i] for i in wanted if i in self.frames}
        if new:
            res = self.decode(dict(self.opened, frame_inds=np.array(new)))
            for i, img in zip(new, res['imgs']):
                kept[i] = resize_crop(img, self.size)
        self.frames = kept
        return np.stack([kept[int(i)] for i in inds.reshape(-1)]).reshape(
            inds.shape + kept[wanted[0]].shape)


def extract_video_features(
        extractor: BackboneFeatures,
        video_path: str,
        clip_len: int = 16,
        frame_interval: int = 1,
        stride: Optional[int] = None,
        size: Optional[int] = 224,
        temporal_pool: str = 'avg',
        batch_size: int = 8,
        backends: Sequence[str] = ('decord', 'pyav'),
        num_threads: int = 1,
        on_batch: Optional[Callable[[int], None]] = None,
        enable_grad: bool = False) -> Tuple[np.ndarray, dict]:
    """Features of one video: sliding clips through ``extractor``.

    The video is opened once (metadata only) and decoded one batch of clips
    at a time (frames shared by consecutive batches decoded once), so
    memory does not grow with its length. Frames past the video's end
    repeat its last frame.

    Args:
        extractor (BackboneFeatures): From :func:`build_feature_extractor`.
        video_path (str): Video file.
        clip_len (int): Frames per clip. Defaults to 16.
        frame_interval (int): Frames between two sampled frames of a clip.
            Defaults to 1.
        stride (int, optional): Frames between two clip starts. Defaults
            to None: ``clip_len * frame_interval // 4`` (at least 1) for
            ``'avg'`` (16-frame clips every 4 frames, as the usual I3D
            features), ``clip_len * frame_interval`` for ``'none'``.
        size (int, optional): Resize the shorter side to ``size``, then
            crop the centre ``size x size``; None keeps the decoded frames.
            Defaults to 224.
        temporal_pool (str): ``'avg'``: one feature per clip, the mean over
            the backbone's time steps; ``'none'``: every time step of the
            backbone. Defaults to ``'avg'``.
        batch_size (int): Clips per backbone call. Defaults to 8.
        backends (Sequence[str]): Decoding backends of ``TALVideoInit``.
            Defaults to ``('decord', 'pyav')``.
        num_threads (int): Decoding threads. Defaults to 1.
        on_batch (Callable[[int], None], optional): Called with the number
            of clips of each batch once it is done. Defaults to None.
        enable_grad (bool): Run with autograd enabled instead of under
            ``torch.no_grad()`` (to check that both give the same
            features; slower, more memory). Defaults to False.

    Returns:
        tuple[np.ndarray, dict]: ``T x C`` float32 features and what the
        manifest records about them: ``fps``, ``num_frames``,
        ``duration``, ``num_clips``, ``num_features``, ``feature_dim``,
        ``feature_stride``, ``center_frames``, ``center``, ``clip_len``,
        ``frame_interval``, ``clip_stride``, ``temporal_pool``,
        ``input_size`` and ``decode_backend``.
    """
    if temporal_pool not in TEMPORAL_POOLS:
        raise ValueError(f'temporal_pool must be one of {TEMPORAL_POOLS}, '
                         f'got {temporal_pool!r}')
    span = clip_len * frame_interval
    if stride is None:
        stride = default_stride(clip_len, frame_interval, temporal_pool)
    if temporal_pool == 'none' and stride != span:
        feature_grid(clip_len, frame_interval, stride, 'none', 1)  # raises
    from re2tal_mm.datasets.video_reader import open_video
    opened = open_video(video_path, backends=backends,
                        num_threads=num_threads)
    total, fps = int(opened['total_frames']), float(opened['avg_fps'])
    starts = clip_starts(total, clip_len, frame_interval, stride)
    inds = clip_frame_indices(starts, clip_len, frame_interval, total)
    cache, outs = _FrameCache(opened, size), []
    try:
        with torch.set_grad_enabled(enable_grad):
            for k in range(0, len(starts), batch_size):
                clips = torch.from_numpy(cache.get(inds[k:k + batch_size]))
                feats = extractor(extractor.preprocess(clips))  # (B, C, T')
                if temporal_pool == 'avg':
                    feats = feats.mean(-1, keepdim=True)
                outs.append(feats.detach().float().cpu())
                if on_batch is not None:
                    on_batch(len(clips))
    finally:
        reader = opened.pop('video_reader', None)
        if hasattr(reader, 'close'):
            reader.close()
    feats = torch.cat(outs)  # (N, C, T')
    steps = feats.shape[-1]
    grid = feature_grid(clip_len, frame_interval, stride, temporal_pool,
                        steps)
    feats = feats.permute(0, 2, 1).reshape(-1, feats.shape[1]).numpy()
    if temporal_pool == 'none':  # steps centred past the video's end
        centres = np.arange(len(feats)) * grid['feature_stride'] + \
            grid['center_frames']
        feats = feats[:max(1, int((centres < total).sum()))]
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    info = dict(fps=fps, num_frames=total, duration=total / fps,
                num_clips=int(len(starts)), num_features=int(feats.shape[0]),
                feature_dim=int(feats.shape[1]), **grid, clip_len=clip_len,
                frame_interval=frame_interval, clip_stride=int(stride),
                temporal_pool=temporal_pool,
                input_size=int(size) if size and size > 0 else None,
                decode_backend=opened.get('decode_backend'))
    return feats, info


def feature_settings(extractor: BackboneFeatures, clip_len: int,
                     frame_interval: int, stride: Optional[int],
                     size: Optional[int], temporal_pool: str) -> dict:
    """What determines the features: backbone config and weights (or the
    seed), whether it is rewired (every rewiring computes one function,
    whatever its mode), pooling, normalization and the clip layout."""
    if stride is None:
        stride = default_stride(clip_len, frame_interval, temporal_pool)
    info = extractor.info
    return dict(backbone_cfg_sha256=info.get('backbone_cfg_sha256'),
                checkpoint_sha256=info.get('checkpoint_sha256'),
                seed=info.get('seed'),
                rewired=info.get('rewiring') is not None,
                spatial_pool=extractor.spatial_pool,
                frames_as_batch=extractor.frames_as_batch,
                mean=info.get('mean'), std=info.get('std'),
                to_rgb=extractor.to_rgb, clip_len=clip_len,
                frame_interval=frame_interval, clip_stride=int(stride),
                input_size=size if size and size > 0 else None,
                temporal_pool=temporal_pool)


def list_videos(video_dir: str, ann_file: Optional[str] = None,
                subset: Optional[Sequence[str]] = None,
                suffix: Optional[str] = None) -> List[Tuple[str, str]]:
    """``(video_id, file)`` pairs, sorted by id.

    Args:
        video_dir (str): Folder of the videos.
        ann_file (str, optional): ActivityNet-style annotation: only its
            videos (of ``subset``), each ``<video_dir>/<video_id><suffix>``
            (the first of :data:`VIDEO_EXTENSIONS` that exists when no
            ``suffix``; the first candidate when none does, so that its
            failure names it). Defaults to None: every file of
            ``video_dir`` with a video extension (or ``suffix``).
        subset (Sequence[str], optional): Subsets of ``ann_file`` kept.
            Defaults to None (all).
        suffix (str, optional): File extension. Defaults to None.
    """
    if not osp.isdir(video_dir):
        raise FileNotFoundError(f'video folder not found: {video_dir}')
    exts = (suffix, ) if suffix else VIDEO_EXTENSIONS
    if ann_file is None:
        pairs = {}
        for name in sorted(os.listdir(video_dir)):
            stem, ext = osp.splitext(name)
            if ext.lower() in exts and stem not in pairs and \
                    osp.isfile(osp.join(video_dir, name)):
                pairs[stem] = osp.join(video_dir, name)
        return sorted(pairs.items())
    from re2tal_mm.datasets.annotations import load_json
    data = load_json(ann_file)
    database = data.get('database') if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise ValueError(f'{ann_file}: no "database" (an ActivityNet-style '
                         'annotation file is expected)')
    if subset:
        wanted = {subset} if isinstance(subset, str) else set(subset)
        database = {k: v for k, v in database.items()
                    if v.get('subset') in wanted}
    pairs = []
    for vid in sorted(database):
        cands = [osp.join(video_dir, vid + e) for e in exts]
        pairs.append((vid, next((c for c in cands if osp.isfile(c)),
                                cands[0])))
    return pairs


def shard_of(items: Sequence, rank: int, world_size: int) -> list:
    """Item ``k`` goes to rank ``k % world_size``: each item once."""
    if not 0 <= rank < world_size:
        raise ValueError(f'rank must be in [0, {world_size}), got {rank}')
    return list(items)[rank::world_size]

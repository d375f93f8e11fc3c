"""Clip geometry: where the sliding clips of a video start, which frames
they read, how a frame is resized, and where their features sit.

Frame ``n`` of a video is shown from ``n / fps`` to ``(n + 1) / fps`` s, so
a clip of frames ``s, s + d, ..., s + (L - 1) d`` (``d`` the frame
interval) covers ``[s, s + L d)`` frames and its centre is ``s + L d / 2``.
"""
from typing import Dict, Optional

import numpy as np

TEMPORAL_POOLS = ('avg', 'none')


def default_stride(clip_len: int, frame_interval: int,
                   temporal_pool: str) -> int:
    """Frames between two clip starts when none is given: the clip's span
    for ``'none'`` (clips tile the video), a quarter of it (at least 1)
    for ``'avg'`` (16-frame clips every 4 frames, as the usual I3D
    features)."""
    span = clip_len * frame_interval
    return span if temporal_pool == 'none' else max(1, span // 4)


def clip_starts(total_frames: int, clip_len: int, frame_interval: int,
                stride: int) -> np.ndarray:
    """First frames of the sliding clips covering a video.

    Clips start every ``stride`` frames from frame 0; the last one is the
    first that reaches the last frame (frames past the end repeat the last
    frame). A video shorter than one clip gets one clip.

    Args:
        total_frames (int): Frames of the video.
        clip_len (int): Frames per clip.
        frame_interval (int): Frames between two sampled frames.
        stride (int): Frames between two clip starts.

    Returns:
        np.ndarray: int64 start frames.
    """
    if min(clip_len, frame_interval, stride, total_frames) < 1:
        raise ValueError('clip_len, frame_interval, stride and total_frames '
                         f'must be >= 1, got {clip_len}, {frame_interval}, '
                         f'{stride}, {total_frames}')
    last = (clip_len - 1) * frame_interval  # last sampled offset
    num = 1 + max(0, -(-(total_frames - 1 - last) // stride))
    return np.arange(num, dtype=np.int64) * stride


def clip_frame_indices(starts: np.ndarray, clip_len: int,
                       frame_interval: int, total_frames: int) -> np.ndarray:
    """``(num_clips, clip_len)`` frame indices (clamped to the video)."""
    inds = starts[:, None] + np.arange(clip_len) * frame_interval
    return np.minimum(inds, total_frames - 1)


def resize_crop(frame: np.ndarray, size: Optional[int]) -> np.ndarray:
    """Resize the shorter side of ``frame`` to ``size`` (bilinear, as
    MMAction2's ``Resize``) and crop the centre ``size x size``.

    Args:
        frame (np.ndarray): ``H x W x 3`` frame.
        size (int, optional): None or <= 0 keeps the frame as it is.
    """
    if not size or size <= 0:
        return frame
    import cv2
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    if (nh, nw) != (h, w):
        frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(frame[top:top + size, left:left + size])


def feature_grid(clip_len: int, frame_interval: int, stride: int,
                 temporal_pool: str = 'avg',
                 backbone_steps: Optional[int] = None) -> Dict[str, float]:
    """Where the features of a clip layout sit in the video.

    Args:
        clip_len (int): Frames per clip.
        frame_interval (int): Frames between two sampled frames.
        stride (int): Frames between two clip starts.
        temporal_pool (str): ``'avg'``: one feature per clip, at its centre;
            ``'none'``: the backbone's ``backbone_steps`` steps per clip,
            each at the centre of its share of the clip (clips must then
            tile the video: ``stride == clip_len * frame_interval``).
            Defaults to ``'avg'``.
        backbone_steps (int, optional): Time steps of the backbone's output
            per clip (``'none'`` only).

    Returns:
        dict: ``feature_stride`` (frames between two features),
        ``center_frames`` (frame of feature 0's centre) and ``center``
        (the same in grid units: ``center_frames / feature_stride``).
    """
    span = clip_len * frame_interval
    if temporal_pool == 'avg':
        step, center_frames = float(stride), span / 2
    elif temporal_pool == 'none':
        if stride != span:
            raise ValueError(
                f"temporal_pool='none' keeps every backbone step, so clips "
                f'must tile the video: stride must be clip_len * '
                f'frame_interval = {span}, got {stride}')
        if not backbone_steps:
            raise ValueError("temporal_pool='none' needs backbone_steps")
        step = span / backbone_steps
        center_frames = step / 2
    else:
        raise ValueError(f'temporal_pool must be one of {TEMPORAL_POOLS}, '
                         f'got {temporal_pool!r}')
    return dict(feature_stride=step, center_frames=center_frames,
                center=center_frames / step)

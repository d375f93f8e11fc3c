"""Segment operations shared by the model, the datasets and the metric.

Segments are ``(..., 2)`` arrays of ``[start, end]``. Every function accepts
torch tensors; :func:`pairwise_tiou` accepts numpy arrays too (the metric works
in numpy).
"""
from dataclasses import dataclass

import numpy as np
import torch

from .nms_procedures import opentad_nms, segment_voting


@dataclass(frozen=True)
class TemporalGrid:
    """Conversion between seconds (video clock) and a model's temporal grid.

    Grid position ``i`` stands for the time
    ``offset + (i + center) * stride / fps`` seconds.

    Args:
        fps (float): Frames per second of the video the grid was sampled from.
        stride (float): Frames (of the video) between two grid positions.
            For a feature sequence this is the feature stride.
        offset (float): Time in seconds of grid position 0's origin (the
            window offset of a sliding-window sample). Defaults to 0.
        center (float): Shift of a grid position inside its stride, in grid
            units (0.5 for features whose position stands for the middle of
            its clip). Defaults to 0.
    """
    fps: float
    stride: float = 1.0
    offset: float = 0.0
    center: float = 0.0

    @property
    def step(self) -> float:
        """Seconds between two grid positions."""
        return self.stride / self.fps

    def to_grid(self, seconds):
        """Seconds (any array-like or tensor) to grid positions."""
        return (seconds - self.offset) / self.step - self.center

    def to_seconds(self, grid):
        """Grid positions (any array-like or tensor) to seconds."""
        return (grid + self.center) * self.step + self.offset


def pairwise_tiou(a, b, length_eps: float = 0.):
    """Temporal IoU of every segment of ``a`` (N, 2) with every one of ``b``
    (M, 2).

    Works on numpy arrays or torch tensors (returns the same kind). Segments of
    zero length have tIoU 0 with everything. ``length_eps`` is added to each
    length in the union (OpenTAD's NMS adds 1e-6).
    """
    lib = torch if isinstance(a, torch.Tensor) else np
    inter = (lib.minimum(a[:, None, 1], b[None, :, 1]) -
             lib.maximum(a[:, None, 0], b[None, :, 0])).clip(min=0)
    union = ((a[:, 1] - a[:, 0] + length_eps)[:, None] +
             (b[:, 1] - b[:, 0] + length_eps)[None, :] - inter)
    return inter / lib.maximum(union, lib.full_like(union, 1e-12))


def clip_segments(segments, duration: float, start: float = 0.):
    """Segments (tensor or numpy, ``(..., 2)``) clipped to ``[start,
    duration]`` (a new array; segments wholly outside become empty)."""
    return segments.clip(start, duration)


def segment_nms(segments: torch.Tensor,
                scores: torch.Tensor,
                labels: torch.Tensor,
                iou_threshold: float = 0.5,
                method: str = 'soft',
                sigma: float = 0.5,
                min_score: float = 1e-3,
                max_num: int = 200,
                class_agnostic: bool = False,
                length_eps: float = 0.,
                voting_thresh: float = 0.,
                procedure: str = 'greedy'):
    """Hard NMS or Gaussian Soft-NMS over 1D segments.

    Soft-NMS (Bodla et al., 2017) decays the score of every remaining segment
    by ``exp(-tiou**2 / sigma)`` after each pick; hard NMS removes remaining
    segments with ``tiou >= iou_threshold``. Segments of different labels do
    not suppress each other unless ``class_agnostic``.

    Args:
        segments (Tensor): (N, 2) segments.
        scores (Tensor): (N,) scores.
        labels (Tensor): (N,) integer labels.
        iou_threshold (float): tIoU from which hard NMS suppresses.
        method (str): ``'soft'`` (Gaussian) or ``'hard'``.
        sigma (float): Gaussian width of Soft-NMS.
        min_score (float): Segments whose (decayed) score falls below are
            dropped.
        max_num (int): At most this many segments are kept.
        class_agnostic (bool): Let any segment suppress any other.
        length_eps (float): Added to every segment's length in the tIoU
            (OpenTAD: 1e-6, in the units of the segments). Defaults to 0.
            (the exact tIoU).
        voting_thresh (float): Class-agnostic NMS only: replace each kept
            segment by the score-weighted mean of the input segments that
            overlap it by tIoU ``>=`` this (OpenTAD's ``seg_voting``); 0
            disables it. Defaults to 0.
        procedure (str): ``'greedy'``: repeatedly pick the best remaining
            segment (ties: the first in input order), all classes in one
            loop, ``min_score`` applied from the start, ``max_num`` over the
            video. ``'opentad'``: OpenTAD's ``batched_nms`` exactly
            (:func:`~re2tal_mm.structures.nms_procedures.opentad_nms`: each
            class on its own and capped at ``max_num``, its swap order for
            ties, ``min_score`` checked after each decay, float32 results).
            Defaults to ``'greedy'``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: kept segments, scores (decayed for
        Soft-NMS) and labels, sorted by descending score.
    """
    if method not in ('soft', 'hard'):
        raise ValueError(f"method must be 'soft' or 'hard', got {method!r}")
    if procedure not in ('greedy', 'opentad'):
        raise ValueError("procedure must be 'greedy' or 'opentad', got "
                         f'{procedure!r}')
    if procedure == 'opentad':
        return opentad_nms(segments, scores, labels, iou_threshold, method,
                           sigma, min_score, max_num, class_agnostic,
                           length_eps, voting_thresh)
    scores_in, scores = scores, scores.clone().float()
    alive = scores >= min_score
    # one tIoU row per pick, never the N x N matrix: a long video merges
    # thousands of window detections (a 2 h video would need ~100 GB)
    segs = segments.float()
    keep, kept_scores = [], []
    while len(keep) < max_num and bool(alive.any()):
        masked = torch.where(alive, scores, torch.full_like(scores, -1.0))
        i = int(masked.argmax())
        keep.append(i)
        kept_scores.append(scores[i].clone())
        alive[i] = False
        row = pairwise_tiou(segs[i:i + 1], segs, length_eps)[0]
        if not class_agnostic:
            row = row * (labels == labels[i])
        if method == 'hard':
            alive &= row < iou_threshold
        else:
            scores = scores * torch.exp(-row**2 / sigma)
            alive &= scores >= min_score
    index = torch.as_tensor(keep, dtype=torch.long, device=segments.device)
    kept = torch.stack(kept_scores) if kept_scores else scores.new_zeros(0)
    out = segments[index]
    if class_agnostic and voting_thresh > 0 and len(index):
        out = segment_voting(out, segments, scores_in.to(segments.dtype),
                             voting_thresh)
    return out, kept, labels[index]

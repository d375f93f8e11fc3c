"""The published OpenTAD NMS procedure over 1D segments.

:func:`opentad_nms` computes what OpenTAD's ``batched_nms``
(``opentad/models/utils/post_processing/nms/nms.py`` with its compiled
``nms_cpu.cpp``) computes, in our own code: float32 segments and scores,
each class on its own (classes in ascending order, each capped at
``max_num``), merged by an (unstable) descending sort and capped again;
Soft-NMS picks the first maximum of an array that it permutes by swaps,
drops a segment when its decayed score falls below ``min_score`` (the first
pick is never checked), hard NMS drops scores ``<= min_score`` before a
sort. Segment lengths are taken as ``end - start + length_eps`` in the tIoU.
It is selected by ``segment_nms(..., procedure='opentad')``.
"""
from typing import Tuple

import torch
from torch import Tensor


def _overlap(x1: Tensor, x2: Tensor, area: Tensor, i: int,
             rest: Tensor) -> Tensor:
    """tIoU of segment ``i`` with the segments at ``rest`` (float32, as
    OpenTAD: ``inter / (area_i + area_j - inter)``, no floor)."""
    inter = (torch.minimum(x2[i], x2[rest]) -
             torch.maximum(x1[i], x1[rest])).clamp(min=0)
    return inter / (area[i] + area[rest] - inter)


def _weight(ovr: Tensor, method: str, iou_threshold: float,
            sigma: float) -> Tensor:
    if method == 'hard':
        return (ovr < iou_threshold).to(ovr.dtype)
    if method == 'linear':
        return torch.where(ovr >= iou_threshold, 1 - ovr,
                           torch.ones_like(ovr))
    # float32 exponent, exp evaluated in float64 and rounded once (the
    # nearest float32, as a correctly rounded expf gives)
    return torch.exp((-(ovr * ovr) / sigma).double()).to(ovr.dtype)


def swap_soft_nms(segs: Tensor, scores: Tensor, method: str = 'soft',
                  iou_threshold: float = 0.5, sigma: float = 0.5,
                  min_score: float = 1e-3, length_eps: float = 1e-6
                  ) -> Tuple[Tensor, Tensor, Tensor]:
    """OpenTAD's ``softnms_1d_cpu`` on one class (float32).

    Returns:
        tuple[Tensor, Tensor, Tensor]: picked segments, their scores at the
        pick and their input indices, in pick order.
    """
    x1, x2 = segs[:, 0].clone(), segs[:, 1].clone()
    sc, area = scores.clone(), x2 - x1 + length_eps
    inds = torch.arange(len(sc))
    cols = (x1, x2, sc, area, inds)
    picked, n, i = [], len(sc), 0
    while i < n:
        j = i + int(torch.argmax(sc[i:n]))  # the first maximum
        for c in cols:
            c[[i, j]] = c[[j, i]]
        picked.append((x1[i].clone(), x2[i].clone(), sc[i].clone()))
        rest = torch.arange(i + 1, n)
        if len(rest):
            sc[rest] *= _weight(_overlap(x1, x2, area, i, rest), method,
                                iou_threshold, sigma)
            good = sc[rest] >= min_score
            end = i + 1 + int(good.sum())
            # a dropped segment takes the last one's place: the holes before
            # `end` are filled, left to right, by the survivors after it,
            # right to left
            holes = rest[:end - i - 1][~good[:end - i - 1]]
            movers = rest[end - i - 1:][good[end - i - 1:]].flip(0)
            for c in cols:
                c[holes] = c[movers]
            n = end
        i += 1
    if not picked:
        return segs.new_zeros(0, 2), scores.new_zeros(0), inds[:0]
    x1s, x2s, scs = (torch.stack(v) for v in zip(*picked))
    return torch.stack([x1s, x2s], 1), scs, inds[:n]


def sorted_hard_nms(segs: Tensor, scores: Tensor, iou_threshold: float,
                    min_score: float, length_eps: float = 1e-6) -> Tensor:
    """OpenTAD's ``NMSop`` on one class: input indices kept, best first."""
    index = torch.arange(len(scores))
    if min_score > 0:
        index = index[scores > min_score]
    segs, scores = segs[index], scores[index]
    x1, x2 = segs[:, 0], segs[:, 1]
    area = x2 - x1 + length_eps
    order = scores.sort(0, descending=True)[1]
    alive = torch.ones(len(order), dtype=torch.bool)
    for k in range(len(order)):
        if not alive[k]:
            continue
        later = torch.arange(k + 1, len(order))
        ovr = _overlap(x1, x2, area, int(order[k]), order[later])
        alive[later[ovr >= iou_threshold]] = False
    return index[order[alive]]


def segment_voting(kept: Tensor, segs: Tensor, scores: Tensor,
                   threshold: float) -> Tensor:
    """Each kept segment replaced by the score-weighted mean of the input
    segments overlapping it by tIoU ``>= threshold`` (OpenTAD's
    ``seg_voting``, class-agnostic NMS)."""
    inter = (torch.minimum(kept[:, None, 1], segs[None, :, 1]) -
             torch.maximum(kept[:, None, 0], segs[None, :, 0])).clamp(min=0)
    union = ((kept[:, 1] - kept[:, 0])[:, None] +
             (segs[:, 1] - segs[:, 0])[None] - inter)
    weight = (inter / union >= threshold).to(scores.dtype) * scores[None]
    weight = weight / weight.sum(1, keepdim=True)
    return weight @ segs


def _one_group(segs, scores, labels, method, iou_threshold, sigma,
               min_score, max_num, length_eps):
    if method == 'hard':
        index = sorted_hard_nms(segs, scores, iou_threshold, min_score,
                                length_eps)[:max_num if max_num > 0 else None]
        return segs[index], scores[index], labels[index]
    s, c, index = swap_soft_nms(segs, scores, method, iou_threshold, sigma,
                                min_score, length_eps)
    n = min(len(c), max_num) if max_num > 0 else len(c)
    return s[:n], c[:n], labels[index][:n]


def opentad_nms(segments: Tensor, scores: Tensor, labels: Tensor,
                iou_threshold: float = 0.5, method: str = 'soft',
                sigma: float = 0.5, min_score: float = 1e-3,
                max_num: int = 200, class_agnostic: bool = False,
                length_eps: float = 1e-6, voting_thresh: float = 0.
                ) -> Tuple[Tensor, Tensor, Tensor]:
    """OpenTAD's ``batched_nms`` (see the module docstring); segments and
    scores come back float32, labels as given."""
    segs, scores = segments.float().cpu(), scores.float().cpu()
    labels = labels.cpu()
    if not len(scores):
        return segs.new_zeros(0, 2), scores.new_zeros(0), labels[:0]
    args = (method, iou_threshold, sigma, min_score, max_num, length_eps)
    if class_agnostic:
        s, c, lb = _one_group(segs, scores, labels, *args)
        if voting_thresh > 0:
            s = segment_voting(s, segs, scores, voting_thresh)
    else:
        parts = [_one_group(segs[labels == k], scores[labels == k],
                            labels[labels == k], *args)
                 for k in torch.unique(labels)]
        s, c, lb = (torch.cat(p) for p in zip(*parts))
    order = c.sort(descending=True)[1][:max_num if max_num > 0 else None]
    return s[order], c[order], lb[order]

"""Backbone outputs to one ``(B, C, T)`` feature sequence.

One function for every path that turns backbone outputs into the detector's
input: the localizer (training, ``mim test``, ``localize_video``) and the
feature extractor (``tools/extract_features.py``), so extracted features are
what the localizer computes before its neck.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

SPATIAL_POOLS = ('avg', 'max', 'avgmax')


def pool_space(x: Tensor, spatial_pool: str = 'avg') -> Tensor:
    """``(B, C, T, H, W)`` to ``(B, C, T)`` (``(B, 2C, T)`` for
    ``'avgmax'``: mean then max, concatenated along channels)."""
    if spatial_pool not in SPATIAL_POOLS:
        raise ValueError(f'spatial_pool must be one of {SPATIAL_POOLS}, '
                         f'got {spatial_pool!r}')
    if spatial_pool == 'avg':
        return x.mean((-2, -1))
    peak = x.amax((-2, -1))
    if spatial_pool == 'max':
        return peak
    return torch.cat([x.mean((-2, -1)), peak], 1)


def pool_backbone_outputs(out: Union[Tensor, Sequence[Tensor]], batch: int,
                          spatial_pool: str = 'avg',
                          frames_as_batch: bool = False,
                          length: Optional[int] = None) -> Tensor:
    """Pool every backbone output over space and bring them to one length.

    Args:
        out (Tensor | Sequence[Tensor]): The backbone's output(s) (SlowFast
            gives two), each ``(B, C, T, H, W)`` or ``(B, C, T)``, or with
            ``frames_as_batch`` ``(B*T, C, H, W)``.
        batch (int): ``B``.
        spatial_pool (str): ``'avg'``, ``'max'`` or ``'avgmax'``. Defaults
            to ``'avg'``.
        frames_as_batch (bool): The outputs have frames folded into the
            batch (a 2D network). Defaults to False.
        length (int, optional): Bring every output straight to this length
            (linear interpolation, ``align_corners=False``, as OpenTAD's
            ``Interpolate`` of each pathway) before concatenating: one
            resampling of each output, never two. Defaults to None (the
            longest output's length).

    Returns:
        Tensor: ``(B, sum of C, length)``.
    """
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if frames_as_batch:  # (B*T, C, H, W) -> (B, C, T, H, W)
        outs = [o.reshape(batch, -1, *o.shape[1:]).transpose(1, 2)
                for o in outs]
    for o in outs:
        if o.ndim not in (3, 5):
            raise ValueError(
                f'backbone output of shape {tuple(o.shape)} has no time '
                'axis; expected (B, C, T, H, W) or (B, C, T) (e.g. a ViT '
                'needs return_feat_map=True, a 2D ResNet '
                'frames_as_batch=True)')
    outs = [pool_space(o, spatial_pool) if o.ndim == 5 else o for o in outs]
    T = length or max(o.shape[-1] for o in outs)
    outs = [o if o.shape[-1] == T else F.interpolate(
        o, size=T, mode='linear', align_corners=False) for o in outs]
    return torch.cat(outs, 1)

"""Piecewise computation of Swin's residual functions.

Window attention, LayerNorm and MLP are local, so a function of a rewired
Swin stage can be computed over pieces of its input and still give exactly
the whole result: the attention half over boxes of whole windows of the
shifted (rolled and padded) frame, split along time, height, then width; the
MLP half (:func:`.halves.mlp_piece`) over slices of time then height. A
function's drop-path mask is drawn once and shared by its pieces. Used by
:mod:`.swin`.
"""
from functools import partial
from typing import List

import torch
from torch import Tensor

from mmaction.models.backbones.swin import (get_window_size, window_partition,
                                            window_reverse)
from ..reversible import Piece, num_pieces, split_range
from .halves import apply_drop_path, draw_drop_path, mlp_piece
from .pieces import piece_bytes


class AxisPiece:
    """A range of one axis of the shifted (rolled, padded) frame.

    In the original frame its rows are at most two segments: from the
    shifted start up to the padded length (its tail possibly padding), and
    the rows that wrapped around to the beginning. ``read`` holds the
    existing rows (a slice, or a tuple of two slices); the piece is laid out
    as ``n1`` rows, ``pad`` zero rows, ``n2`` rows.

    Args:
        start (int): First row of the range in the shifted frame.
        stop (int): One past its last row.
        length (int): Unpadded length of the axis.
        padded (int): Padded length (a multiple of the window size).
        shift (int): Cyclic shift of the axis.
    """

    def __init__(self, start, stop, length, padded, shift):
        self.start, self.stop, self.padded = start, stop, padded
        self.shift = shift
        self.size = stop - start
        first = (start + shift) % padded
        end = first + self.size
        self.n1 = max(min(end, padded, length) - first, 0)
        self.pad = min(end, padded) - first - self.n1
        self.n2 = max(end - padded, 0)
        assert self.n2 <= length, 'wrapped rows must exist'
        segments = [slice(first, first + self.n1)] if self.n1 else []
        if self.n2:
            segments.append(slice(0, self.n2))
        self.read = segments[0] if len(segments) == 1 else tuple(segments)
        self.valid = self.n1 + self.n2

    def expand(self, y: Tensor, dim: int) -> Tensor:
        """Zero rows inserted where the shifted frame holds padding."""
        if self.pad == 0:
            return y
        shape = list(y.shape)
        shape[dim] = self.pad
        parts = [y.narrow(dim, 0, self.n1), y.new_zeros(shape),
                 y.narrow(dim, self.n1, self.n2)]
        return torch.cat([p for p in parts if p.shape[dim]], dim=dim)

    def select(self, y: Tensor, dim: int) -> Tensor:
        """The rows that exist in the unshifted, unpadded tensor."""
        if self.pad == 0:
            return y
        if self.n2 == 0:
            return y.narrow(dim, 0, self.n1)
        parts = [y.narrow(dim, 0, self.n1),
                 y.narrow(dim, self.n1 + self.pad, self.n2)]
        return torch.cat([p for p in parts if p.shape[dim]], dim=dim)


def shift_regions(start, stop, padded, window, shift, device) -> Tensor:
    """Region ids (0, 1, 2) of rows ``start:stop`` of a shifted axis, as
    ``compute_mask`` assigns them (one region when the axis is not
    shifted)."""
    rows = torch.arange(start, stop, device=device)
    if shift == 0:
        return torch.zeros_like(rows)
    return (rows >= padded - window).long() + (rows >= padded - shift).long()


def piece_mask(pd, ph, pw, window_size, device) -> Tensor:
    """The rows of ``compute_mask`` for the windows of one piece."""
    regions = [shift_regions(a.start, a.stop, a.padded, w, a.shift, device)
               for a, w in zip((pd, ph, pw), window_size)]
    ids = regions[0].view(-1, 1, 1) * 9 + regions[1].view(1, -1, 1) * 3 + \
        regions[2].view(1, 1, -1)
    ids = window_partition(ids[None, ..., None], window_size).squeeze(-1)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return torch.zeros(diff.shape, device=device).masked_fill(
        diff != 0, float(-100.0))


def window_attention_piece(block, shifted, window_size, drop, axes, xp):
    """The attention half on one box of whole shifted windows.

    ``xp`` holds the existing rows of the box (time x height x width, one
    :class:`AxisPiece` each in ``axes``) in original frame order.
    """
    B, C = xp.shape[0], xp.shape[-1]
    y = block.norm1(xp)
    for dim, axis in enumerate(axes, 1):
        y = axis.expand(y, dim)
    mask = piece_mask(*axes, window_size, y.device) if shifted else None
    windows = window_partition(y, window_size)
    windows = block.attn(windows, mask=mask)
    windows = windows.view(-1, *(window_size + (C, )))
    y = window_reverse(windows, window_size, B,
                       *(axis.size for axis in axes))
    for dim, axis in enumerate(axes, 1):
        y = axis.select(y, dim)
    return apply_drop_path(y, drop)


def split_window_attention(block, options: dict,
                           x: Tensor) -> List[Piece]:
    """Pieces of the attention half: boxes of whole windows in the shifted
    frame, split along time first, then height, then width."""
    B, D, H, W, C = x.shape
    window_size, shift_size = get_window_size((D, H, W), block.window_size,
                                              block.shift_size)
    drop = draw_drop_path(block.drop_path, x)
    shifted = any(i > 0 for i in shift_size)
    padded = [-(-n // w) * w for n, w in zip((D, H, W), window_size)]
    blocks = [p // w for p, w in zip(padded, window_size)]
    left = num_pieces(x, options['pieces'], piece_bytes(options))
    ranges = []
    for n, p, w in zip(blocks, padded, window_size):
        parts = min(left, n)
        left = -(-left // parts)
        ranges.append(split_range(p, parts, w))
    pieces = []
    for d0, d1 in ranges[0]:
        pd = AxisPiece(d0, d1, D, padded[0], shift_size[0])
        for h0, h1 in ranges[1]:
            ph = AxisPiece(h0, h1, H, padded[1], shift_size[1])
            for w0, w1 in ranges[2]:
                pw = AxisPiece(w0, w1, W, padded[2], shift_size[2])
                if not (pd.valid and ph.valid and pw.valid):
                    continue
                index = (slice(None), pd.read, ph.read, pw.read)
                fn = partial(window_attention_piece, block, shifted,
                             window_size, drop, (pd, ph, pw))
                pieces.append(Piece(index, index, fn))
    return pieces


def token_boxes(x: Tensor, parts: int):
    """``(B, D, H, ...)`` split into ``parts`` boxes along D, then H."""
    D, H = x.shape[1], x.shape[2]
    d_parts = min(parts, D)
    h_parts = -(-parts // d_parts)
    return [(slice(None), slice(d0, d1), slice(h0, h1))
            for d0, d1 in split_range(D, d_parts)
            for h0, h1 in split_range(H, h_parts)]


def split_mlp_boxes(block, options: dict, x: Tensor) -> List[Piece]:
    """Pieces of the MLP half: boxes of tokens along time, then height."""
    drop = draw_drop_path(block.drop_path, x)
    fn = partial(mlp_piece, block, drop)
    return [Piece(box, box, fn) for box in token_boxes(
        x, num_pieces(x, options['pieces'], piece_bytes(options)))]

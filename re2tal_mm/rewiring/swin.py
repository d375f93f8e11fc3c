"""Adapter for mmaction2's ``SwinTransformer3D``.

Each ``SwinTransformerBlock3D`` gives two residual functions: the attention
half (norm1, shifted or unshifted window attention with the stage's mask,
drop-path) and the MLP half (norm2, MLP, drop-path). The patch embedding,
``PatchMerging`` and the output norms stay non-reversible.

Both halves are local, so with ``chunks > 1`` the reversible engine computes
them piece by piece: the attention half over boxes of whole windows of the
shifted (rolled and padded) frame, split along time, height, then width; the
MLP half over slices of time then height. The drop-path mask of a function is
drawn once and shared by its pieces, so chunking does not change the function
(Dropout inside attention or MLP, zero in Swin's configs, would draw its
masks per piece).

Non-reversible layers: ``merging='recompute'`` fuses each ``PatchMerging``
into the reversible stage before it (recomputed from the two stored streams,
so the stage output is never kept), ``'checkpoint'`` checkpoints it;
``freeze_patch_embed=True`` stops the patch embedding's gradients so its
input clip need not be kept.
"""
from functools import partial
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from mmcv.cnn.bricks import DropPath
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmaction.models.backbones.swin import (BasicLayer, PatchMerging,
                                            SwinTransformer3D, compute_mask,
                                            get_window_size, window_partition,
                                            window_reverse)

from ..reversible import (Chunk, ResidualFunction, RewiredStage, num_chunks,
                          split_range)
from .base import register_adapter
from .rewire import FROZEN_ATTR, FUSED_ATTR, PATCHED_ATTR


def chunked_window_attention(attn, windows, mask, chunk):
    """``attn(windows, mask)`` evaluated ``chunk`` windows at a time.

    Windows are independent, so the result is the same; only the transient
    attention matrices (the largest tensors of a recompute) shrink.
    """
    total = windows.shape[0]
    if not chunk or total <= chunk:
        return attn(windows, mask=mask)
    outs = []
    for start in range(0, total, chunk):
        part = windows[start:start + chunk]
        part_mask = None
        if mask is not None:
            rows = torch.arange(start, start + part.shape[0],
                                device=mask.device) % mask.shape[0]
            part_mask = mask[rows]
        outs.append(attn(part, mask=part_mask))
    return torch.cat(outs)


def shifted_window_attention(block, x, mask, chunk=None):
    """``SwinTransformerBlock3D.forward_part1`` with chunked attention."""
    B, D, H, W, C = x.shape
    window_size, shift_size = get_window_size((D, H, W), block.window_size,
                                              block.shift_size)
    x = block.norm1(x)
    pad_d = (window_size[0] - D % window_size[0]) % window_size[0]
    pad_b = (window_size[1] - H % window_size[1]) % window_size[1]
    pad_r = (window_size[2] - W % window_size[2]) % window_size[2]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b, 0, pad_d))
    _, Dp, Hp, Wp, _ = x.shape
    shifted = any(i > 0 for i in shift_size)
    if shifted:
        x = torch.roll(x, shifts=tuple(-i for i in shift_size),
                       dims=(1, 2, 3))
    windows = window_partition(x, window_size)
    windows = chunked_window_attention(block.attn, windows,
                                       mask if shifted else None, chunk)
    windows = windows.view(-1, *(window_size + (C, )))
    x = window_reverse(windows, window_size, B, Dp, Hp, Wp)
    if shifted:
        x = torch.roll(x, shifts=tuple(shift_size), dims=(1, 2, 3))
    if pad_d > 0 or pad_r > 0 or pad_b > 0:
        x = x[:, :D, :H, :W, :].contiguous()
    return x


def attention_half(block, x, mask, chunk=None):
    """``drop_path(W-MSA(norm1(x)))`` of one Swin block (``mask`` may be a
    :class:`LazyMask`)."""
    if isinstance(mask, LazyMask):
        mask = mask()
    return block.drop_path(shifted_window_attention(block, x, mask, chunk))


class LazyMask:
    """The stage's shifted-window mask, built on first use.

    The whole mask holds ``num_windows x N x N`` floats (79 MB for Swin-T's
    first stage at 32 frames) and would live as long as the stage's
    functions; chunked pieces build their own part instead
    (:func:`piece_mask`), so it is only built for unchunked calls.

    Args:
        *args: Arguments of ``compute_mask``.
    """

    def __init__(self, *args):
        self.args = args
        self.mask = None

    def __call__(self) -> Tensor:
        if self.mask is None:
            self.mask = compute_mask(*self.args)
        return self.mask


def mlp_half(block, x):
    """``drop_path(MLP(norm2(x)))`` of one Swin block."""
    return block.forward_part2(x)


# ----------------------------------------------------------------- chunking
def draw_drop_path(block, x: Tensor):
    """The drop-path mask mmcv's ``drop_path`` would draw for the output of
    a half block with input ``x``, as ``(keep_prob, mask)`` (None if off)."""
    dp = block.drop_path
    if not isinstance(dp, DropPath) or not dp.training or \
            dp.drop_prob == 0:
        return None
    keep = 1 - dp.drop_prob
    dtype = torch.get_autocast_dtype(x.device.type) \
        if torch.is_autocast_enabled(x.device.type) else x.dtype
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    return keep, (keep + torch.rand(shape, dtype=dtype,
                                    device=x.device)).floor()


def apply_drop_path(out: Tensor, drop) -> Tensor:
    """``drop_path`` with a mask drawn by :func:`draw_drop_path`."""
    return out if drop is None else out.div(drop[0]) * drop[1]


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


def attention_piece(block, shifted, chunk, window_size, drop, axes, xp):
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
    windows = chunked_window_attention(block.attn, windows, mask, chunk)
    windows = windows.view(-1, *(window_size + (C, )))
    y = window_reverse(windows, window_size, B,
                       *(axis.size for axis in axes))
    for dim, axis in enumerate(axes, 1):
        y = axis.select(y, dim)
    return apply_drop_path(y, drop)


def split_attention_half(block, chunk, chunks, chunk_bytes,
                         x: Tensor) -> List[Chunk]:
    """Pieces of the attention half: boxes of whole windows in the shifted
    frame, split along time first, then height, then width."""
    B, D, H, W, C = x.shape
    window_size, shift_size = get_window_size((D, H, W), block.window_size,
                                              block.shift_size)
    drop = draw_drop_path(block, x)
    shifted = any(i > 0 for i in shift_size)
    padded = [-(-n // w) * w for n, w in zip((D, H, W), window_size)]
    blocks = [p // w for p, w in zip(padded, window_size)]
    left = num_chunks(x, chunks, chunk_bytes)
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
                fn = partial(attention_piece, block, shifted, chunk,
                             window_size, drop, (pd, ph, pw))
                pieces.append(Chunk(index, index, fn))
    return pieces


def mlp_piece(block, drop, x):
    """The MLP half on a piece of tokens."""
    return apply_drop_path(block.mlp(block.norm2(x)), drop)


def token_boxes(x: Tensor, parts: int):
    """``(B, D, H, ...)`` split into ``parts`` boxes along D, then H."""
    D, H = x.shape[1], x.shape[2]
    d_parts = min(parts, D)
    h_parts = -(-parts // d_parts)
    return [(slice(None), slice(d0, d1), slice(h0, h1))
            for d0, d1 in split_range(D, d_parts)
            for h0, h1 in split_range(H, h_parts)]


def split_mlp_half(block, chunks, chunk_bytes, x: Tensor) -> List[Chunk]:
    """Pieces of the MLP half: boxes of tokens along time, then height."""
    drop = draw_drop_path(block, x)
    fn = partial(mlp_piece, block, drop)
    return [Chunk(box, box, fn)
            for box in token_boxes(x, num_chunks(x, chunks, chunk_bytes))]


def block_functions(layer: BasicLayer, mask, chunk=None, chunks: int = 1,
                    chunk_bytes: Optional[int] = None
                    ) -> List[ResidualFunction]:
    """The residual functions of a ``BasicLayer`` in chain order.

    Args:
        layer (BasicLayer): The stage.
        mask (Tensor | LazyMask): The stage's shifted-window attention
            mask (pieces build their own part of it).
        chunk (int, optional): Windows per attention call.
        chunks (int): Pieces each function is computed in by the
            reversible engine (1: whole tensors, no split).
        chunk_bytes (int, optional): Upper bound on the input bytes of one
            piece (more pieces are used for longer inputs).
    """
    split = chunks > 1 or bool(chunk_bytes)
    functions = []
    for blk in layer.blocks:
        functions.append(ResidualFunction(
            partial(attention_half, blk, mask=mask, chunk=chunk),
            [blk.norm1, blk.attn],
            partial(split_attention_half, blk, chunk, chunks, chunk_bytes)
            if split else None))
        functions.append(ResidualFunction(
            partial(mlp_half, blk), [blk.norm2, blk.mlp],
            partial(split_mlp_half, blk, chunks, chunk_bytes)
            if split else None))
    return functions


# ------------------------------------------------- non-reversible layers
def patch_merging(merging: PatchMerging, x: Tensor) -> Tensor:
    """The class forward of ``PatchMerging`` (its instance forward may be
    replaced while rewired)."""
    return PatchMerging.forward(merging, x)


def checkpointed_merging(merging: PatchMerging, x: Tensor) -> Tensor:
    """``PatchMerging`` under activation checkpointing (keeps its input)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return checkpoint(patch_merging, merging, x, use_reentrant=False)
    return patch_merging(merging, x)


def skip_merging(x: Tensor) -> Tensor:
    """Stands in for a ``PatchMerging`` fused into the stage before it."""
    return x


def split_merging(merging, chunks, chunk_bytes, x: Tensor) -> List[Chunk]:
    """Pieces of ``PatchMerging``: consecutive slices of time."""
    fn = partial(patch_merging, merging)
    return [Chunk((slice(None), slice(d0, d1)), (slice(None), slice(d0, d1)),
                  fn)
            for d0, d1 in split_range(
                x.shape[1], num_chunks(x, chunks, chunk_bytes))]


def merging_tail(merging: PatchMerging, chunks: int,
                 chunk_bytes) -> ResidualFunction:
    """``PatchMerging`` as the fused tail of a reversible stage."""
    split = chunks > 1 or bool(chunk_bytes)
    return ResidualFunction(
        partial(patch_merging, merging), [merging],
        partial(split_merging, merging, chunks, chunk_bytes)
        if split else None)


def rewired_layer_forward(layer: BasicLayer, stage: RewiredStage,
                          options: dict, x, do_downsample: bool = True):
    """``BasicLayer.forward`` with the block loop replaced by the chain
    (and the ``PatchMerging`` after it fused in when marked so)."""
    B, C, D, H, W = x.shape
    window_size, shift_size = get_window_size((D, H, W), layer.window_size,
                                              layer.shift_size)
    x = rearrange(x, 'b c d h w -> b d h w c')
    Dp = int(np.ceil(D / window_size[0])) * window_size[0]
    Hp = int(np.ceil(H / window_size[1])) * window_size[1]
    Wp = int(np.ceil(W / window_size[2])) * window_size[2]
    attn_mask = LazyMask(Dp, Hp, Wp, window_size, shift_size, x.device)
    chunks, chunk_bytes = options['chunks'], options['chunk_bytes']
    functions = block_functions(layer, attn_mask, options['attention_chunk'],
                                chunks, chunk_bytes)
    fused = layer.__dict__.get(FUSED_ATTR, False)
    tail = merging_tail(layer.downsample, chunks, chunk_bytes) \
        if fused else None
    x = stage(functions, x, tail)
    if layer.downsample is not None and do_downsample and not fused:
        x = layer.downsample(x)
    return x


MERGING = ('keep', 'checkpoint', 'recompute')


@register_adapter
class SwinAdapter:
    """Describes where ``SwinTransformer3D``'s residual functions are.

    Options:

    * ``attention_chunk`` (int, default 16): windows per attention call
      inside the rewired functions (0 or None: all at once).
    * ``chunks`` (int, default 1): pieces each residual function is computed,
      recomputed and back-propagated in by the reversible engine.
    * ``chunk_mib`` (float, optional): memory budget of one piece's input in
      MiB; longer inputs are cut into more pieces.
    * ``merging`` (str, default ``'keep'``): ``PatchMerging`` kept as it is,
      ``'checkpoint'``-ed, or ``'recompute'``-d from the stored streams of
      the stage before it (checkpointed where that stage's output is also a
      backbone output).
    * ``freeze_patch_embed`` (bool, default False): no gradients for the
      patch embedding (its input clip is then not kept for the backward).

    None of these changes the function computed.
    """

    backbone_types = (SwinTransformer3D, )
    options = dict(attention_chunk=16, chunks=1, chunk_mib=None,
                   merging='keep', freeze_patch_embed=False)
    functions_per_block = 2

    @staticmethod
    def stages(backbone: SwinTransformer3D):
        """Yield ``(name, stage_module, num_functions, total_blocks)``."""
        for i, layer in enumerate(backbone.layers):
            n = len(layer.blocks)
            yield f'layers.{i}', layer, 2 * n, n

    @staticmethod
    def prepare(backbone: SwinTransformer3D, merging='keep',
                freeze_patch_embed=False, **_):
        """Apply the non-reversible-layer options to ``backbone``."""
        if merging not in MERGING:
            raise ValueError(f'merging must be one of {MERGING}, got '
                             f'{merging!r}')
        for i, layer in enumerate(backbone.layers):
            ds = layer.downsample
            if ds is None or merging == 'keep':
                continue
            output = i in backbone.out_indices and \
                not backbone.out_after_downsample
            if merging == 'recompute' and not output:
                layer.__dict__[FUSED_ATTR] = True
                ds.forward = skip_merging
            else:
                ds.forward = partial(checkpointed_merging, ds)
            ds.__dict__[PATCHED_ATTR] = True
        if freeze_patch_embed:
            frozen = [p for p in backbone.patch_embed.parameters()
                      if p.requires_grad]
            for p in frozen:
                p.requires_grad_(False)
            backbone.__dict__[FROZEN_ATTR] = frozen

    @staticmethod
    def non_reversible(backbone: SwinTransformer3D):
        """``(name, module, policy)`` of the layers outside the chains."""
        frozen = not any(p.requires_grad
                         for p in backbone.patch_embed.parameters())
        yield 'patch_embed', backbone.patch_embed, \
            'frozen' if frozen else 'kept'
        for i, layer in enumerate(backbone.layers):
            ds = layer.downsample
            if ds is None:
                continue
            policy = 'kept'
            if layer.__dict__.get(FUSED_ATTR, False):
                policy = 'recompute'
            elif ds.__dict__.get(PATCHED_ATTR, False):
                policy = 'checkpoint'
            yield f'layers.{i}.downsample', ds, policy

    @staticmethod
    def make_forward(stage_module: BasicLayer, stage: RewiredStage,
                     attention_chunk=16, chunks=1, chunk_mib=None, **_):
        """The replacement forward bound to ``stage_module``."""
        chunk_bytes = int(chunk_mib * 2**20) if chunk_mib else None
        options = dict(attention_chunk=attention_chunk, chunks=int(chunks),
                       chunk_bytes=chunk_bytes)
        return partial(rewired_layer_forward, stage_module, stage, options)

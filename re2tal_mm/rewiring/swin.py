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
from .swin_pieces import (chunked_window_attention, split_attention_half,
                          split_mlp_half)


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
    (:func:`.swin_pieces.piece_mask`), so it is only built for unchunked calls.

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

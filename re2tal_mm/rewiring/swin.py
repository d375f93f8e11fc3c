"""Adapter for mmaction2's ``SwinTransformer3D``.

Each ``SwinTransformerBlock3D`` gives two residual functions: the attention
half (norm1, shifted or unshifted window attention with the stage's mask,
drop-path) and the MLP half (norm2, MLP, drop-path). The patch embedding,
``PatchMerging`` and the output norms stay non-reversible.
"""
from functools import partial
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from mmaction.models.backbones.swin import (BasicLayer, SwinTransformer3D,
                                            compute_mask, get_window_size,
                                            window_partition, window_reverse)

from ..reversible import ResidualFunction, RewiredStage
from .base import register_adapter


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
    """``drop_path(W-MSA(norm1(x)))`` of one Swin block."""
    return block.drop_path(shifted_window_attention(block, x, mask, chunk))


def mlp_half(block, x):
    """``drop_path(MLP(norm2(x)))`` of one Swin block."""
    return block.forward_part2(x)


def block_functions(layer: BasicLayer, mask,
                    chunk=None) -> List[ResidualFunction]:
    """The residual functions of a ``BasicLayer`` in chain order."""
    functions = []
    for blk in layer.blocks:
        functions.append(ResidualFunction(
            partial(attention_half, blk, mask=mask, chunk=chunk),
            [blk.norm1, blk.attn]))
        functions.append(ResidualFunction(
            partial(mlp_half, blk), [blk.norm2, blk.mlp]))
    return functions


def rewired_layer_forward(layer: BasicLayer, stage: RewiredStage,
                          chunk, x, do_downsample: bool = True):
    """``BasicLayer.forward`` with the block loop replaced by the chain."""
    B, C, D, H, W = x.shape
    window_size, shift_size = get_window_size((D, H, W), layer.window_size,
                                              layer.shift_size)
    x = rearrange(x, 'b c d h w -> b d h w c')
    Dp = int(np.ceil(D / window_size[0])) * window_size[0]
    Hp = int(np.ceil(H / window_size[1])) * window_size[1]
    Wp = int(np.ceil(W / window_size[2])) * window_size[2]
    attn_mask = compute_mask(Dp, Hp, Wp, window_size, shift_size, x.device)
    x = stage(block_functions(layer, attn_mask, chunk), x)
    if layer.downsample is not None and do_downsample:
        x = layer.downsample(x)
    return x


@register_adapter
class SwinAdapter:
    """Describes where ``SwinTransformer3D``'s residual functions are.

    Option ``attention_chunk`` (int, default 16): windows per attention call
    inside the rewired functions (0 or None: all at once). Numerically the
    same attention; it bounds the transient memory of each recompute.
    """

    backbone_types = (SwinTransformer3D, )
    options = dict(attention_chunk=16)
    functions_per_block = 2

    @staticmethod
    def stages(backbone: SwinTransformer3D):
        """Yield ``(name, stage_module, num_functions, total_blocks)``."""
        for i, layer in enumerate(backbone.layers):
            n = len(layer.blocks)
            yield f'layers.{i}', layer, 2 * n, n

    @staticmethod
    def make_forward(stage_module: BasicLayer, stage: RewiredStage,
                     attention_chunk=16):
        """The replacement forward bound to ``stage_module``."""
        return partial(rewired_layer_forward, stage_module, stage,
                       attention_chunk)

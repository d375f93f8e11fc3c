"""Adapter for mmaction2's ``VisionTransformer`` (VideoMAE / VideoMAE V2).

All blocks keep the token shape, so the whole block stack is one reversible
stage with two residual functions per block: the attention half
``drop_path(gamma_1 * attn(norm1(x)))`` and the MLP half
``drop_path(gamma_2 * mlp(norm2(x)))`` (without the gammas when the block has
no layer scale). Drop path runs inside the functions, so its mask is replayed
exactly by the recompute. Patch embedding, position embedding, the final
norm / ``fc_norm`` mean pooling and ``return_feat_map`` are unchanged; the
output has the same form as before.

Option ``head_chunk`` (int, default 4): attention heads per call inside the
rewired functions (0 or None: all at once). Heads are independent, so it is
the same attention; it bounds the transient ``N x N`` attention matrices of
each recompute, the largest tensors of the reversible backward.
"""
from functools import partial

import torch
import torch.nn.functional as F
from mmaction.models.backbones.vit_mae import VisionTransformer

from ..reversible import RewiredStage
from .base import register_adapter
from .common import transformer_functions


def chunked_attention(attn, x, chunk=None):
    """``Attention.forward`` evaluated ``chunk`` heads at a time."""
    B, N, _ = x.shape
    if hasattr(attn, 'q_bias'):
        bias = torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias),
                          attn.v_bias))
        qkv = F.linear(x, attn.qkv.weight, bias)
    else:
        qkv = attn.qkv(x)
    q, k, v = qkv.reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    chunk = chunk or attn.num_heads
    outs = []
    for h in range(0, attn.num_heads, chunk):
        scores = (q[:, h:h + chunk] * attn.scale) @ \
            k[:, h:h + chunk].transpose(-2, -1)
        outs.append(attn.attn_drop(scores.softmax(dim=-1)) @ v[:, h:h + chunk])
    x = torch.cat(outs, 1).transpose(1, 2).reshape(B, N, -1)
    return attn.proj_drop(attn.proj(x))


def attention_half(block, x, chunk=None):
    """``drop_path([gamma_1 *] attn(norm1(x)))`` of one ViT block."""
    out = chunked_attention(block.attn, block.norm1(x), chunk)
    if hasattr(block, 'gamma_1'):
        out = block.gamma_1 * out
    return block.drop_path(out)


def mlp_half(block, x):
    """``drop_path([gamma_2 *] mlp(norm2(x)))`` of one ViT block."""
    out = block.mlp(block.norm2(x))
    if hasattr(block, 'gamma_2'):
        out = block.gamma_2 * out
    return block.drop_path(out)


def position_embedding(vit: VisionTransformer, h: int, w: int):
    """``pos_embed`` resized to an ``h x w`` patch grid, as the ViT does."""
    if (h, w) == vit.grid_size:
        return vit.pos_embed
    pos_embed = vit.pos_embed.reshape(-1, *vit.grid_size, vit.embed_dims)
    pos_embed = F.interpolate(pos_embed.permute(0, 3, 1, 2), size=(h, w),
                              mode='bicubic', align_corners=False)
    return pos_embed.permute(0, 2, 3, 1).reshape(1, -1, vit.embed_dims)


def rewired_vit_forward(vit: VisionTransformer, stage: RewiredStage, chunk,
                        x):
    """``VisionTransformer.forward`` with the block loop run as one chain."""
    b, _, _, h, w = x.shape
    h //= vit.patch_size
    w //= vit.patch_size
    x = vit.patch_embed(x)[0]
    x = vit.pos_drop(x + position_embedding(vit, h, w))
    x = stage(transformer_functions(
        vit.blocks, partial(attention_half, chunk=chunk), mlp_half), x)
    x = vit.norm(x)
    if vit.return_feat_map:
        return x.reshape(b, -1, h, w, vit.embed_dims).permute(0, 4, 1, 2, 3)
    if vit.fc_norm is not None:
        return vit.fc_norm(x.mean(1))
    return x[:, 0]


@register_adapter
class VisionTransformerAdapter:
    """Describes where ``VisionTransformer``'s residual functions are."""

    backbone_types = (VisionTransformer, )
    options = dict(head_chunk=4)
    functions_per_block = 2

    @staticmethod
    def stages(backbone: VisionTransformer):
        """Yield ``(name, stage_module, num_functions, total_blocks)``."""
        n = len(backbone.blocks)
        yield 'blocks', backbone, 2 * n, n

    @staticmethod
    def make_forward(stage_module: VisionTransformer, stage: RewiredStage,
                     head_chunk=4):
        """The replacement forward bound to the backbone itself."""
        return partial(rewired_vit_forward, stage_module, stage, head_chunk)

"""Adapter for mmaction2's ``MViT`` (MViTv2).

A ``MultiScaleBlock`` is chainable when both its shortcuts are identities: no
query stride (``pool_skip is None``), no width change (``proj is None``). In
each scale the longest run of chainable blocks is a reversible stage named
``blocks[start:stop]``, two functions per block: ``drop_path(attn(norm1(x),
thw))`` and ``drop_path(mlp(norm2(x)))``. ``residual_pooling`` adds the pooled
``q`` *inside* ``MultiScaleAttention``, so it is part of the attention half.
``thw`` is constant along a run (stride 1). Blocks that pool the residual or
change the width stay plain (the first block of each later scale; with
``dim_mul_in_attention=False`` also the one before it), as do the patch
embedding, the cls token and the output norms. ``MViT.forward`` is replaced
once, with every run added to it.

Option ``checkpoint_plain`` (default True): in ``'reversible'`` mode the plain
blocks (the largest activations left) run under activation checkpointing.
"""
import re
from functools import partial

import torch
from mmaction.models.backbones.mvit import MViT, resize_pos_embed
from torch.utils.checkpoint import checkpoint

from ..reversible import RewiredStage
from .base import register_adapter
from .common import transformer_functions


def attention_half(block, x, size):
    """``drop_path(attn(norm1(x), size))`` (pooled-query residual inside)."""
    return block.drop_path(block.attn(block.norm1(x), size)[0])


def mlp_half(block, x):
    """``drop_path(mlp(norm2(x)))`` of one MViT block."""
    return block.drop_path(block.mlp(block.norm2(x)))


def is_chainable(block) -> bool:
    """Whether both shortcuts of a block are the identity."""
    return block.pool_skip is None and block.proj is None


def scale_bounds(mvit: MViT):
    """``(start, stop)`` block indices of every scale."""
    edges = [0] + list(mvit.downscale_indices) + [len(mvit.blocks)]
    return list(zip(edges[:-1], edges[1:]))


def chainable_run(mvit: MViT, start: int, stop: int):
    """The longest run ``(a, b)`` of chainable blocks in ``[start, stop)``."""
    best, a = (start, start), None
    for i in range(start, stop + 1):
        ok = i < stop and is_chainable(mvit.blocks[i])
        if ok and a is None:
            a = i
        elif not ok and a is not None:
            best = max(best, (a, i), key=lambda r: r[1] - r[0])
            a = None
    return best


def scale_output(mvit: MViT, index: int, x, size):
    """``(x, output)`` of ``MViT.forward`` after block ``index``: like the
    original, the next blocks read the output-normed ``x``."""
    B, _, C = x.shape
    x = getattr(mvit, f'norm{mvit.stage_indices[index]}')(x)
    tokens = x.transpose(1, 2)
    if not mvit.with_cls_token:
        return x, tokens.reshape(B, C, *size)
    patch_token = tokens[:, :, 1:].reshape(B, C, *size)
    return x, ([patch_token, tokens[:, :, 0]] if mvit.output_cls_token
               else patch_token)


def plain_block(block, x, size, checkpointed: bool):
    """``block(x, size)``, checkpointed if asked and grads are needed."""
    if checkpointed and torch.is_grad_enabled() and x.requires_grad:
        return checkpoint(block, x, size, use_reentrant=False)
    return block(x, size)


def rewired_mvit_forward(mvit: MViT, runs: dict, checkpoint_plain, x):
    """``MViT.forward`` with each run ``{start: (stop, stage)}`` chained."""
    reversible = any(s.mode == 'reversible' for _, s in runs.values())
    B = x.shape[0]
    x, size = mvit.patch_embed(x)
    x = torch.cat((mvit.cls_token.expand(B, -1, -1), x), dim=1)
    if mvit.use_abs_pos_embed:
        x = x + resize_pos_embed(mvit.pos_embed, mvit.patch_resolution, size,
                                 mode=mvit.interpolate_mode,
                                 num_extra_tokens=mvit.num_extra_tokens)
    if not mvit.with_cls_token:
        x = x[:, 1:]
    outs, i = [], 0
    while i < len(mvit.blocks):
        if i in runs:
            stop, stage = runs[i]
            x = stage(transformer_functions(
                mvit.blocks[i:stop], partial(attention_half, size=size),
                mlp_half), x)
            i = stop
        else:
            x, size = plain_block(mvit.blocks[i], x, size,
                                  checkpoint_plain and reversible)
            i += 1
        if i - 1 in mvit.stage_indices and \
                mvit.stage_indices[i - 1] in mvit.out_scales:
            x, out = scale_output(mvit, i - 1, x, size)
            outs.append(out)
    return tuple(outs)


@register_adapter
class MViTAdapter:
    """Describes where ``MViT``'s residual functions are."""

    backbone_types = (MViT, )
    options = dict(checkpoint_plain=True)
    functions_per_block = 2

    @staticmethod
    def stages(backbone: MViT):
        """Yield ``(name, stage_module, num_functions, total_blocks)``."""
        for start, stop in scale_bounds(backbone):
            a, b = chainable_run(backbone, start, stop)
            if a == b:
                yield f'blocks[{start}:{stop}]', None, 0, stop - start
            else:
                yield f'blocks[{a}:{b}]', backbone, 2 * (b - a), stop - start

    @staticmethod
    def make_forward(stage_module: MViT, stage: RewiredStage,
                     checkpoint_plain: bool = True):
        """The backbone forward with this run added to those already set."""
        start, stop = map(int, re.search(r'\[(\d+):(\d+)\]$',
                                         stage.name).groups())
        current = stage_module.__dict__.get('forward')
        runs = dict(current.args[1]) if isinstance(current, partial) and \
            current.func is rewired_mvit_forward else {}
        runs[start] = (stop, stage)
        return partial(rewired_mvit_forward, stage_module, runs,
                       checkpoint_plain)

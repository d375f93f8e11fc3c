"""Adapter for mmaction2's ``MViT`` (MViTv2).

A ``MultiScaleBlock`` is chainable when both its shortcuts are identities: no
query stride (``pool_skip is None``), no width change (``proj is None``). In
each scale the longest run of chainable blocks is a reversible stage named
``blocks[start:stop]``, two functions per block built from the block's own
submodules: ``drop_path(attn(norm1(x), thw))`` and
``drop_path(mlp(norm2(x)))``. ``residual_pooling`` adds the pooled ``q``
*inside* ``MultiScaleAttention``, so it is part of the attention half.
``thw`` is constant along a run (stride 1). ``MViT.forward`` runs unchanged:
a run's first block runs its chain, the others pass their input through.
Blocks that pool the residual or change the width stay plain (the first of
each later scale; with ``dim_mul_in_attention=False`` also the one before
it), as do the patch embedding, the cls token and the output norms.

Options (none changes the function computed):

* ``checkpoint_plain`` (bool, default True): in ``'reversible'`` mode the
  plain blocks (the largest activations left) run under activation
  checkpointing;
* ``pieces`` (int, default 1) / ``piece_mib`` (float, optional): the MLP
  half over slices of tokens (the pooled attention reads all, stays whole).
"""
from functools import partial
from itertools import groupby
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmaction.models.backbones.mvit import MViT
from ..reversible import RewiredStage
from .base import (FLOOR_PIECES, Adapter, StageSpec, Undo, patch_forwards,
                   register_adapter)
from .halves import block_functions


def pooled_attention_half(block, size, x: Tensor) -> Tensor:
    """``drop_path(attn(norm1(x), size))`` (pooled-query residual inside)."""
    return block.drop_path(block.attn(block.norm1(x), size)[0])


def chain_forward(blocks: Sequence, stage: RewiredStage, x: Tensor,
                  size) -> Tuple[Tensor, tuple]:
    """``forward`` of the first block of a run: the run's chain."""
    return stage(block_functions(blocks, stage.options,
                                 pooled_attention_half, size), x), size


def checkpointed_block(block, x: Tensor, size):
    """The class forward of a plain block under activation checkpointing."""
    if torch.is_grad_enabled() and x.requires_grad:
        return checkpoint(type(block).forward, block, x, size,
                          use_reentrant=False)
    return type(block).forward(block, x, size)


def is_chainable(block) -> bool:
    """Whether both shortcuts of a block are the identity."""
    return block.pool_skip is None and block.proj is None


def scale_bounds(mvit: MViT):
    """``(start, stop)`` block indices of every scale."""
    edges = [0, *mvit.downscale_indices, len(mvit.blocks)]
    return list(zip(edges[:-1], edges[1:]))


def chainable_run(mvit: MViT, start: int, stop: int) -> Tuple[int, int]:
    """The longest run ``(a, b)`` of chainable blocks in ``[start, stop)``."""
    best = (start, start)
    for ok, run in groupby(range(start, stop),
                           lambda i: is_chainable(mvit.blocks[i])):
        run = list(run)
        if ok and len(run) > best[1] - best[0]:
            best = (run[0], run[-1] + 1)
    return best


@register_adapter
class MViTAdapter(Adapter):
    """Describes where ``MViT``'s residual functions are."""

    backbone_types = (MViT, )
    options = dict(checkpoint_plain=True, pieces=1, piece_mib=None)
    presets = dict(fast=dict(checkpoint_plain=False), floor=FLOOR_PIECES)

    @classmethod
    def stages(cls, backbone: MViT, **options) -> Iterator[StageSpec]:
        """The longest chainable run of every scale."""
        for start, stop in scale_bounds(backbone):
            a, b = chainable_run(backbone, start, stop)
            if a == b:
                yield StageSpec(f'blocks[{start}:{stop}]', None, 0,
                                stop - start)
            else:
                yield StageSpec(f'blocks[{a}:{b}]', backbone.blocks[a],
                                2 * (b - a), stop - start, bounds=(a, b),
                                passthrough=list(backbone.blocks)[a + 1:b])

    @classmethod
    def plain_blocks(cls, backbone: MViT) -> List[Tuple[int, nn.Module]]:
        """``(index, block)`` of the blocks outside every run."""
        chained = {i for spec in cls.stages(backbone) if spec.module
                   for i in range(*spec.bounds)}
        return [(i, b) for i, b in enumerate(backbone.blocks)
                if i not in chained]

    @classmethod
    def prepare(cls, backbone: MViT, mode: str,
                checkpoint_plain: bool = True, **_) -> Optional[Undo]:
        """Checkpoint the plain blocks in ``'reversible'`` mode."""
        if checkpoint_plain and mode == 'reversible':
            return patch_forwards((b, partial(checkpointed_block, b))
                                  for _, b in cls.plain_blocks(backbone))
        return None

    @classmethod
    def make_forward(cls, spec: StageSpec, stage: RewiredStage) -> Callable:
        """The first block's forward: the chain of the run."""
        return partial(chain_forward, [spec.module, *spec.passthrough],
                       stage)

    @staticmethod
    def passthrough(x, size):  # a block of a run, after its first
        return x, size

    @classmethod
    def non_reversible(cls, backbone: MViT,
                       stages: Sequence[RewiredStage]) -> Iterator:
        """The patch embedding and the plain blocks."""
        yield 'patch_embed', backbone.patch_embed, 'kept'
        for i, block in cls.plain_blocks(backbone):
            policy = 'checkpoint' if 'forward' in block.__dict__ else 'kept'
            yield f'blocks.{i}', block, policy

"""Adapter for mmaction2's ``VisionTransformer`` (VideoMAE / VideoMAE V2).

All blocks keep the token shape, so the whole block stack is one reversible
stage with two residual functions per block, built from the block's own
submodules: the attention half ``drop_path([gamma_1 *] attn(norm1(x)))``
and the MLP half ``drop_path([gamma_2 *] mlp(norm2(x)))`` (a third: a
temporal adapter, ``re2tal_mm/models/temporal_adapter.py``). The backbone's
own ``forward`` runs unchanged: the first block's ``forward`` runs the
chain of all blocks and the others pass their input through, so patch and
position embedding, the final norms and the output form are upstream's.

Options (none changes the function computed):

* ``attention`` (``'upstream'`` or ``'sdpa'``, default ``'upstream'``):
  the block's ``Attention`` runs as it is, or its weights are used through
  ``torch.nn.functional.scaled_dot_product_attention`` (no ``N x N``
  matrix kept; ``tests/test_rewiring_zoo.py`` compares it with the
  upstream module in float64). Dropout inside the attention must be off
  for ``'sdpa'``.
* ``pieces`` (int, default 1) / ``piece_mib`` (float, optional): the
  reversible engine computes the MLP half over slices of tokens (at least
  ``pieces``, each input at most ``piece_mib`` MiB) and, with
  ``attention='sdpa'``, the attention half over slices of the batch, then
  groups of heads (each adds its heads' share of the output projection).
"""
from functools import partial
from typing import Callable, Iterator, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmaction.models.backbones.vit_mae import VisionTransformer
from ..reversible import Piece, RewiredStage, num_pieces
from .base import FLOOR_PIECES, Adapter, StageSpec, register_adapter
from .halves import (apply_drop_path, batch_head_pieces, block_functions,
                     draw_drop_path, layer_scaled)
from .pieces import piece_bytes
from .temporal_adapter import temporal_adapter_functions

ATTENTION = ('upstream', 'sdpa')


def sdpa_heads(attn, heads: slice, x: Tensor) -> Tensor:
    """``Attention.forward`` of the heads ``heads`` through
    ``scaled_dot_product_attention``: their share of the output projection
    (the projection bias is added by the first group)."""
    B, N, C = x.shape
    h = C // attn.num_heads
    rows = torch.arange(heads.start * h, heads.stop * h, device=x.device)
    rows = torch.cat([rows, rows + C, rows + 2 * C])
    bias = None
    if hasattr(attn, 'q_bias'):
        bias = torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias),
                          attn.v_bias))[rows]
    qkv = F.linear(x, attn.qkv.weight[rows], bias)
    q, k, v = qkv.reshape(B, N, 3, -1, h).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    out = out.transpose(1, 2).reshape(B, N, -1)
    cols = slice(heads.start * h, heads.stop * h)
    return F.linear(out, attn.proj.weight[:, cols],
                    attn.proj.bias if heads.start == 0 else None)


def attention_half(block, attention: str, x: Tensor) -> Tensor:
    """``drop_path([gamma_1 *] attn(norm1(x)))`` of one ViT block."""
    y = block.norm1(x)
    if attention == 'sdpa':
        out = sdpa_heads(block.attn, slice(0, block.attn.num_heads), y)
    else:
        out = block.attn(y)
    return block.drop_path(layer_scaled(block, 'gamma_1', out))


def attention_piece(block, heads: slice, drop, x: Tensor) -> Tensor:
    """The share of the heads ``heads`` in the attention half."""
    out = sdpa_heads(block.attn, heads, block.norm1(x))
    return apply_drop_path(layer_scaled(block, 'gamma_1', out), drop)


def split_attention_half(block, options: dict, x: Tensor) -> List[Piece]:
    """Pieces of the attention half: slices of the batch (attention is per
    sample, e.g. per clip), then groups of heads adding their shares."""
    return batch_head_pieces(
        partial(attention_piece, block), draw_drop_path(block.drop_path, x),
        x.shape[0], block.attn.num_heads,
        num_pieces(x, options['pieces'], piece_bytes(options)))


def chain_functions(blocks: Sequence, options: dict) -> List:
    """Two residual functions per block (then its temporal adapter's), in
    chain order. The whole block is each function's module, so layer-scale
    gammas get gradients."""
    attention = options['attention']
    return block_functions(
        blocks, options, attention_half, attention,
        split_attention=split_attention_half if attention == 'sdpa'
        else None, extra=temporal_adapter_functions)


def chain_forward(blocks: Sequence, stage: RewiredStage, x: Tensor):
    """``forward`` of the first block: the chain of all blocks."""
    return stage(chain_functions(blocks, stage.options), x)


@register_adapter
class VisionTransformerAdapter(Adapter):
    """Describes where ``VisionTransformer``'s residual functions are."""

    backbone_types = (VisionTransformer, )
    options = dict(attention='upstream', pieces=1, piece_mib=None)
    presets = dict(floor=dict(FLOOR_PIECES, attention='sdpa'))

    @classmethod
    def stages(cls, backbone: VisionTransformer,
               **options) -> Iterator[StageSpec]:
        """The whole block stack, run by the first block."""
        blocks = list(backbone.blocks)
        n, extra = len(blocks), 2 * sum(hasattr(b, 'temporal_adapter')
                                        for b in blocks)
        yield StageSpec('blocks', blocks[0], 2 * n + extra, n, bounds=(0, n),
                        passthrough=blocks[1:])

    @classmethod
    def prepare(cls, backbone: VisionTransformer, mode: str,
                attention: str = 'upstream', **_) -> None:
        """Check the options (nothing outside the chain changes)."""
        if attention not in ATTENTION:
            raise ValueError(f'attention must be one of {ATTENTION}, got '
                             f'{attention!r}')
        for i, blk in enumerate(backbone.blocks):
            drops = (blk.attn.attn_drop.p, blk.attn.proj_drop.p)
            if attention == 'sdpa' and any(drops):
                raise ValueError(f"attention='sdpa' needs the attention "
                                 f'dropout off; blocks.{i} has {drops}')

    @classmethod
    def make_forward(cls, spec: StageSpec, stage: RewiredStage) -> Callable:
        """The first block's forward: the chain of all blocks."""
        return partial(chain_forward, [spec.module, *spec.passthrough],
                       stage)

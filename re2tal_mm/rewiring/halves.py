"""The halves of a pre-norm transformer block (ViT, MViT, Swin) as
residual functions.

* :func:`draw_drop_path` / :func:`apply_drop_path`: one drop-path mask for
  all pieces of a function; :func:`layer_scaled`: an optional layer scale;
* :func:`mlp_half` / :func:`split_mlp_half`: the MLP half, whole or over
  slices of tokens; :func:`batch_head_pieces`: an attention half over
  slices of the batch and groups of heads;
* :func:`block_functions`: the two residual functions of each block (the
  adapter gives its attention half), in chain order.
"""
from functools import partial
from typing import Callable, List, Optional, Sequence

import torch
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

from ..reversible import Piece, ResidualFunction, num_pieces, split_range
from .pieces import piece_bytes, split_asked


def draw_drop_path(drop_path: nn.Module, x: Tensor):
    """The mask mmcv's ``DropPath`` would draw for an output shaped like
    ``x``, as ``(keep_prob, mask)``; None when it is off."""
    if not isinstance(drop_path, DropPath) or not drop_path.training or \
            drop_path.drop_prob == 0:
        return None
    keep = 1 - drop_path.drop_prob
    dtype = torch.get_autocast_dtype(x.device.type) \
        if torch.is_autocast_enabled(x.device.type) else x.dtype
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    return keep, (keep + torch.rand(shape, dtype=dtype,
                                    device=x.device)).floor()


def apply_drop_path(out: Tensor, drop) -> Tensor:
    """Drop path with a mask drawn by :func:`draw_drop_path`."""
    return out if drop is None else out.div(drop[0]) * drop[1]


def layer_scaled(block: nn.Module, name: str, out: Tensor) -> Tensor:
    """``gamma * out`` when the block has a layer scale called ``name``."""
    gamma = getattr(block, name, None)
    return out if gamma is None else gamma * out


def mlp_half(block: nn.Module, x: Tensor) -> Tensor:
    """``drop_path([gamma_2 *] mlp(norm2(x)))`` of a pre-norm block."""
    return block.drop_path(layer_scaled(block, 'gamma_2',
                                        block.mlp(block.norm2(x))))


def mlp_piece(block: nn.Module, drop, x: Tensor) -> Tensor:
    """The MLP half on a slice of tokens, with a shared drop-path mask."""
    out = layer_scaled(block, 'gamma_2', block.mlp(block.norm2(x)))
    return apply_drop_path(out, drop)


def split_mlp_half(block: nn.Module, options: dict,
                   x: Tensor) -> List[Piece]:
    """Pieces of the MLP half of ``(B, N, C)`` tokens: slices of N."""
    fn = partial(mlp_piece, block, draw_drop_path(block.drop_path, x))
    return [Piece((slice(None), slice(a, b)), (slice(None), slice(a, b)), fn)
            for a, b in split_range(x.shape[1], num_pieces(
                x, options.get('pieces'), piece_bytes(options)))]


def batch_head_pieces(fn: Callable, drop, batch: int, heads: int,
                      n: int) -> List[Piece]:
    """Pieces of an attention computed per sample and shared out by heads:
    slices of the batch (dimension 0, each with its slice of the drop-path
    mask ``drop``), then groups of heads within a slice (each adding its
    share); ``n`` pieces, or as near as the batch and the heads allow.
    ``fn(heads, drop, x)`` computes one piece (``heads`` a slice)."""
    slices = split_range(batch, min(batch, n))
    groups = min(heads, -(-n // len(slices)))
    pieces = []
    for a, b in slices:
        part = None if drop is None else (drop[0], drop[1][a:b])
        for h0, h1 in split_range(heads, groups):
            pieces.append(Piece((slice(a, b), ), (slice(a, b), ),
                                partial(fn, slice(h0, h1), part)))
    return pieces


def whole_block(block: nn.Module) -> tuple:
    """The modules of both halves: the whole block (so layer-scale gammas
    get gradients)."""
    return [block], [block]


def block_functions(blocks: Sequence[nn.Module], options: dict,
                    attention: Callable, *args,
                    split_attention: Optional[Callable] = None,
                    mlp: Callable = mlp_half,
                    split_mlp: Callable = split_mlp_half,
                    modules: Callable = whole_block,
                    extra: Optional[Callable] = None
                    ) -> List[ResidualFunction]:
    """The residual functions of pre-norm blocks, in chain order: for
    each block ``attention(block, *args, x)``, then ``mlp(block, x)``, then
    ``extra(block, options)``'s functions if given.

    Args:
        blocks (Sequence[nn.Module]): The blocks.
        options (dict): The stage's options (``pieces``, ``piece_mib``).
        attention (Callable): The attention half.
        *args: Its arguments after the block.
        split_attention (Callable, optional): ``(block, options, x)`` ->
            pieces of the attention half, used when the options ask.
            Defaults to None (whole).
        mlp (Callable): The MLP half. Defaults to :func:`mlp_half`.
        split_mlp (Callable): The same for the MLP half. Defaults to
            :func:`split_mlp_half`.
        modules (Callable): ``block`` -> the modules of each half.
            Defaults to :func:`whole_block`.
        extra (Callable, optional): ``(block, options)`` -> functions
            after the block's two. Defaults to None.
    """
    split = split_asked(options)
    functions = []
    for blk in blocks:
        attn_modules, mlp_modules = modules(blk)
        functions.append(ResidualFunction(
            partial(attention, blk, *args), attn_modules,
            partial(split_attention, blk, options)
            if split and split_attention is not None else None))
        functions.append(ResidualFunction(
            partial(mlp, blk), mlp_modules,
            partial(split_mlp, blk, options) if split else None))
        if extra is not None:
            functions.extend(extra(blk, options))
    return functions

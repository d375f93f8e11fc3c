"""Pieces of a local residual function, for piecewise (re)computation.

A residual function whose output at some region depends only on the input
around it (window attention, LayerNorm, MLP, a convolution branch with a
temporal halo) can be evaluated piece by piece. A :class:`Piece` says which
part of the input a piece reads, which part of the output it writes and how
to compute it. Indices are tuples over the leading dimensions of a tensor;
each entry is a ``slice`` or a tuple of slices (segments taken one after the
other, e.g. a range that wraps around a cyclic shift). Slices are views, so
reading a piece and adding its result back copy nothing beyond the
concatenation of segments.
"""
from typing import Callable, NamedTuple, Tuple, Union

import torch
from torch import Tensor

Index = Tuple[Union[slice, Tuple[slice, ...]], ...]
WHOLE: Index = ()


class Piece(NamedTuple):
    """One piece of a residual function.

    Args:
        read (Index): The input region the piece needs (halo included).
        write (Index): The output region it produces.
        fn (Callable[[Tensor], Tensor]): Maps ``input[read]`` to
            ``output[write]`` (already cropped to ``write``).
    """
    read: Index
    write: Index
    fn: Callable[[Tensor], Tensor]


def whole_piece(fn: Callable[[Tensor], Tensor]) -> Piece:
    """The trivial split: one piece covering everything."""
    return Piece(WHOLE, WHOLE, fn)


def _segmented_dim(index: Index):
    """The first dimension whose entry is a tuple of segments, or None."""
    return next((k for k, e in enumerate(index) if isinstance(e, tuple)),
                None)


def _with(index: Index, dim: int, entry: slice) -> Index:
    return index[:dim] + (entry, ) + index[dim + 1:]


def take(x: Tensor, index: Index) -> Tensor:
    """``x`` at ``index`` (a view unless it holds segments)."""
    k = _segmented_dim(index)
    if k is None:
        return x[index]
    return torch.cat([take(x, _with(index, k, seg)) for seg in index[k]],
                     dim=k)


def add_at_(dest: Tensor, index: Index, value: Tensor,
            alpha: float = 1) -> None:
    """``dest[index] += alpha * value`` in place."""
    if value.dtype != dest.dtype:
        value = value.to(dest.dtype)
    k = _segmented_dim(index)
    if k is None:
        dest[index].add_(value, alpha=alpha)
        return
    lengths = [len(range(dest.shape[k])[seg]) for seg in index[k]]
    for seg, part in zip(index[k], value.split(lengths, dim=k)):
        add_at_(dest, _with(index, k, seg), part, alpha)


def split_range(length: int, parts: int, unit: int = 1):
    """``parts`` contiguous ``(start, stop)`` ranges covering ``length``,
    with boundaries on multiples of ``unit`` (fewer when too short)."""
    units = -(-length // unit)
    parts = max(1, min(parts, units))
    bounds = [round(i * units / parts) * unit for i in range(parts + 1)]
    bounds[-1] = length
    return [(a, min(b, length)) for a, b in zip(bounds[:-1], bounds[1:])
            if a < min(b, length)]


def num_pieces(x: Tensor, pieces: int, piece_bytes=None) -> int:
    """Pieces to use for ``x``: at least ``pieces``, more when a piece of
    ``x`` would exceed ``piece_bytes``."""
    n = max(int(pieces or 1), 1)
    if piece_bytes:
        total = x.numel() * x.element_size()
        n = max(n, -(-total // int(piece_bytes)))
    return n

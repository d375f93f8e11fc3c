"""A block's temporal adapter (``re2tal_mm/models/temporal_adapter.py``) as
residual functions of a rewired stage: :func:`temporal_adapter_functions`,
split over rows of the token grid by :func:`split_temporal_adapter`."""
from functools import partial
from typing import List

from torch import Tensor, nn

from ..reversible import Piece, ResidualFunction, num_pieces, split_range
from .pieces import piece_bytes, split_asked


def no_residual(x: Tensor) -> Tensor:
    """A residual function that adds nothing (a 0-d zero, broadcast)."""
    return x.new_zeros(())


# keeps the streams' roles after a temporal adapter: with F = 0 the chain
# step is h_k = h_{k-2}, so one such step would swap which stream the next
# function reads; two (the adapter at zero, then this) leave the chain as
# it was without the adapter
KEEP_STREAMS = ResidualFunction(no_residual, [])


def temporal_adapter_functions(block: nn.Module,
                               options: dict) -> List[ResidualFunction]:
    """The residual functions of ``block.temporal_adapter`` (see
    ``re2tal_mm/models/temporal_adapter.py``): its branch, then
    :data:`KEEP_STREAMS`, so a zero-initialised temporal adapter leaves the
    rewired backbone's function exactly as without it; empty without one.
    Its ``ClipGrid`` is bound now: the recompute in the backward uses the
    one of this forward. Split when asked: its convolution is along time
    only, so rows of the token grid are independent."""
    adapter = getattr(block, 'temporal_adapter', None)
    if adapter is None:
        return []
    grid = adapter.clip_grid
    split = partial(split_temporal_adapter, adapter, grid, options) \
        if split_asked(options) and grid is not None else None
    return [ResidualFunction(partial(adapter.residual, grid), [adapter],
                             split), KEEP_STREAMS]


def split_temporal_adapter(adapter: nn.Module, grid, options: dict,
                           x: Tensor) -> List[Piece]:
    """Pieces of a temporal adapter on ``(B * clips, t * h * w, C)``
    tokens: rows ``[h0, h1)`` of the grid, at every time step (segments of
    the token dimension)."""
    n, t, h, w = grid
    pieces = []
    for h0, h1 in split_range(h, num_pieces(x, options.get('pieces'),
                                            piece_bytes(options))):
        index = (slice(None), tuple(
            slice(k * h * w + h0 * w, k * h * w + h1 * w) for k in range(t)))
        pieces.append(Piece(index, index, partial(
            adapter.residual, type(grid)(n, t, h1 - h0, w))))
    return pieces

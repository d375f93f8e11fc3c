"""Piecewise recompute: the options that ask for it, and the pieces of a
convolution branch.

* :func:`piece_bytes` / :func:`split_asked`: what the ``pieces`` /
  ``piece_mib`` options of every adapter ask for;
* :func:`conv_halo` / :func:`split_branch`: a branch made of local layers
  recomputed piece by piece along dimension 2 (time for 3D inputs, height
  for 2D ones), each piece read with the halo its kernels need;
  :func:`split_layers` for a branch that runs its layers one after the
  other, each piece cropped after every layer, so that only the layers
  that reach along dimension 2 compute its halo.
"""
from functools import partial
from typing import Callable, List, Optional, Sequence

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..reversible import Piece, num_pieces, split_range


def piece_bytes(options: dict) -> Optional[int]:
    """``piece_mib`` of the options in bytes (None when unset)."""
    mib = options.get('piece_mib')
    return int(mib * 2**20) if mib else None


def split_asked(options: dict) -> bool:
    """Whether the options ask for piecewise recompute."""
    return int(options.get('pieces') or 1) > 1 or \
        bool(options.get('piece_mib'))


# --------------------------------------------------- convolution branches
# layers a branch may hold and stay local along dimension 2 (BatchNorm only
# in eval mode: batch statistics are not local)
POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish,
             nn.Sigmoid, nn.Identity, nn.Dropout)


def conv_halo(block: nn.Module, branch: Sequence[nn.Module]) -> Optional[int]:
    """Rows of dimension 2 a branch needs on each side of a slice: the sum
    of its kernels' radii along that dimension; None when the branch is not
    local (a stride, uneven padding, pooling, batch statistics, or a layer
    of unknown reach).

    Args:
        block (nn.Module): The block (for its branch's submodules).
        branch (Sequence[nn.Module]): The branch's top-level layers.
    """
    halo = 0
    for top in branch:
        for m in top.modules():
            if isinstance(m, _ConvNd):
                k, s = m.kernel_size[0], m.stride[0]
                p, d = m.padding[0], m.dilation[0]
                if s != 1 or k % 2 == 0 or isinstance(p, str) or \
                        p != d * (k - 1) // 2 or m.padding_mode != 'zeros':
                    return None
                halo += p
            elif isinstance(m, _BatchNorm):
                if m.training:
                    return None
            elif not list(m.children()) and not isinstance(m, POINTWISE) \
                    and type(m).__name__ not in LOCAL_LEAVES:
                return None
    return halo


# leaves known to act within each (N, C, H, W) sample or along the batch
# (TSM's shift folds clips into the batch), by class name: mmcv's Swish
LOCAL_LEAVES = {'Swish'}


def branch_piece(branch: Callable, start: int, length: int,
                 x: Tensor) -> Tensor:
    """``branch`` on a slice with halo, cropped to the ``length`` rows from
    ``start`` (relative to the slice)."""
    return branch(x).narrow(2, start, length)


def layer_radii(block: nn.Module,
                layers: Sequence[nn.Module]) -> Optional[List[int]]:
    """The reach (:func:`conv_halo`) of each layer of a branch that runs
    ``layers`` one after the other; None when one is not local."""
    radii = [conv_halo(block, [layer]) for layer in layers]
    return None if None in radii else radii


def layers_piece(layers: Sequence[nn.Module], radii: Sequence[int],
                 rows: range, read: range, length: int, x: Tensor) -> Tensor:
    """``layers`` one after the other on the rows ``read`` of dimension 2
    (of ``length``), each output cropped to the rows the later layers still
    need around ``rows``: only a layer that reaches along dimension 2 is
    computed on a halo."""
    lo, hi = read.start, read.stop
    reach = sum(radii)
    for layer, radius in zip(layers, radii):
        x = layer(x)
        reach -= radius
        start = max(rows.start - reach, 0)
        stop = min(rows.stop + reach, length)
        if (start, stop) != (lo, hi):
            x = x.narrow(2, start - lo, stop - start)
            lo, hi = start, stop
    return x


def slice_ranges(x: Tensor, options: dict) -> List[tuple]:
    """``(start, stop)`` of the slices of dimension 2 the options ask for
    (:func:`~re2tal_mm.reversible.num_pieces`)."""
    return split_range(x.shape[2], num_pieces(x, options.get('pieces'),
                                              piece_bytes(options)))


def halo_pieces(x: Tensor, halo: int, options: dict,
                piece_fn: Callable) -> List[Piece]:
    """Slices of dimension 2 (:func:`slice_ranges`), each read with
    ``halo`` rows on each side; ``piece_fn(rows, read, length)`` gives the
    function of one (``rows`` written, ``read`` read, as ranges)."""
    length = x.shape[2]
    pieces = []
    for t0, t1 in slice_ranges(x, options):
        read = range(max(t0 - halo, 0), min(t1 + halo, length))
        pieces.append(Piece(
            (slice(None), slice(None), slice(read.start, read.stop)),
            (slice(None), slice(None), slice(t0, t1)),
            piece_fn(range(t0, t1), read, length)))
    return pieces


def split_layers(layers: Sequence[nn.Module], radii: Sequence[int],
                 options: dict, x: Tensor) -> List[Piece]:
    """Pieces of a branch that runs ``layers`` in order, each cropped after
    every layer (:func:`layers_piece`)."""
    return halo_pieces(x, sum(radii), options, partial(
        partial, layers_piece, layers, radii))


def split_branch(branch: Callable, halo: int, options: dict,
                 x: Tensor) -> List[Piece]:
    """Pieces of a branch: slices of dimension 2 read with their halo,
    the whole branch computed on each."""
    return halo_pieces(x, halo, options, lambda rows, read, _: partial(
        branch_piece, branch, rows.start - read.start, len(rows)))

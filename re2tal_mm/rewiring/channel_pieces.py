"""Layer by layer, in slices of output channels: the pieces of a branch
whose BatchNorm computes batch statistics.

A branch with BatchNorm in training mode is not local along dimension 2
(each channel is normalised by statistics over the whole batch and clip),
so :mod:`.pieces` cannot slice it in time. It is local along channels,
though, one layer at a time: a convolution followed by its BatchNorm and
activation (an mmcv ``ConvModule``) computes each output channel from the
whole input and that channel's own statistics. So such a branch is
recomputed in its backward one segment at a time (:func:`layerwise`), each
segment a layer and the pointwise layers after it, kept as its input only
and recomputed and back-propagated in slices of its output channels
(:func:`~re2tal_mm.reversible.checkpoint_pieces`): alive at once are the
segments' inputs and one slice's activations, not the whole branch's.
A slice runs the layer's own forward, the parameters and running
statistics of its convolution and BatchNorm narrowed to the slice
(:func:`narrowed`); a layer that mixes channels otherwise (squeeze-
excitation) is one whole piece.
"""
import math
from contextlib import contextmanager
from functools import partial
from typing import Callable, List, Optional, Sequence, Tuple

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..reversible import (Piece, ResidualFunction, checkpoint_pieces,
                          num_pieces, split_range, whole_piece)
from .pieces import LOCAL_LEAVES, POINTWISE, piece_bytes


def is_pointwise(layer: nn.Module) -> bool:
    """A layer acting on each element alone (an activation)."""
    return all(isinstance(m, POINTWISE) or type(m).__name__ in LOCAL_LEAVES
               for m in layer.modules() if not list(m.children()))


def sliced_parts(layer: nn.Module) -> Optional[Tuple[_ConvNd, list, bool]]:
    """``(conv, norms, depthwise)`` of a layer computing each output channel
    from its convolution's filter, its own BatchNorm statistics and a
    pointwise activation (``conv`` then ``norm`` then ``act``, as mmcv's
    ``ConvModule``); None for any other layer.

    The convolution is the layer's ``conv`` or the ``net`` it wraps (TSM's
    temporal shift, which acts on the input only). ``depthwise``: one group
    per channel, so a slice reads the same slice of the input (then the
    convolution must not be wrapped: a wrapper may act across channels).
    """
    conv = getattr(layer, 'conv', None)
    wrapped = conv is not None and not isinstance(conv, _ConvNd)
    if wrapped:
        conv = getattr(conv, 'net', None)
    if not isinstance(conv, _ConvNd) or conv.transposed or \
            tuple(getattr(layer, 'order', ('conv', ))[:1]) != ('conv', ):
        return None
    depthwise = conv.groups == conv.in_channels == conv.out_channels > 1
    if conv.groups != 1 and (not depthwise or wrapped):
        return None
    norms = [m for m in layer.modules() if isinstance(m, _BatchNorm)]
    others = [m for m in layer.modules() if not list(m.children()) and
              m is not conv and m not in norms]
    if any(n.num_features != conv.out_channels for n in norms) or \
            len(norms) > 1 or not all(map(is_pointwise, others)):
        return None
    return conv, norms, depthwise


@contextmanager
def narrowed(conv: _ConvNd, norms: Sequence[_BatchNorm], depthwise: bool,
             start: int, stop: int):
    """The layer computes output channels ``start:stop`` inside the body:
    its convolution's filters, its BatchNorm's parameters and running
    statistics (views: an update reaches the whole buffers) narrowed to
    them; a depthwise convolution has as many groups."""
    swaps = [(m, group, name) for m, names in
             [(conv, ('weight', 'bias'))] +
             [(n, ('weight', 'bias', 'running_mean', 'running_var'))
              for n in norms]
             for group in ('_parameters', '_buffers') for name in names
             if getattr(m, group).get(name) is not None]
    saved = [(m, group, name, getattr(m, group)[name])
             for m, group, name in swaps]
    groups = conv.groups
    for m, group, name, t in saved:
        getattr(m, group)[name] = t[start:stop]
    if depthwise:
        conv.groups = stop - start
    try:
        yield
    finally:
        conv.groups = groups
        for m, group, name, t in saved:
            getattr(m, group)[name] = t


def run_layers(layers: Sequence[nn.Module], x: Tensor) -> Tensor:
    """The layers one after the other."""
    for layer in layers:
        x = layer(x)
    return x


def channel_slice(layers: Sequence[nn.Module], parts: tuple, start: int,
                  stop: int, x: Tensor) -> Tensor:
    """Output channels ``start:stop`` of a segment: its first layer
    narrowed (:func:`narrowed`), then its pointwise layers."""
    with narrowed(*parts, start, stop):
        return run_layers(layers, x)


def channel_pieces(layers: Sequence[nn.Module], parts: tuple, options: dict,
                   x: Tensor) -> List[Piece]:
    """Slices of a segment's output channels, each at most ``piece_mib``
    (or at least ``pieces`` slices), reading the whole input (the same
    channels of it for a depthwise convolution). A dense layer whose output
    is no larger than its input is one piece: each of its slices would
    compute the whole input gradient, so slices would lower its peak by
    little and cost a slow, thin convolution each."""
    conv, _, depthwise = parts
    channels = conv.out_channels
    ratio = channels / conv.in_channels / math.prod(conv.stride)
    if ratio <= 1 and not depthwise:
        return [whole_piece(partial(run_layers, layers))]
    # a slice's output is about its share of the input times the ratio
    n = num_pieces(x, options.get('pieces'), piece_bytes(options) and
                   piece_bytes(options) / ratio)
    pieces = []
    for start, stop in split_range(channels, min(n, channels)):
        write = (slice(None), slice(start, stop))
        pieces.append(Piece(write if depthwise else (), write, partial(
            channel_slice, layers, parts, start, stop)))
    return pieces


def segments(layers: Sequence[nn.Module]) -> Optional[List[tuple]]:
    """The branch's layers grouped into segments, each a layer and the
    pointwise layers after it, with the layer's :func:`sliced_parts` (None:
    computed whole). None when a pointwise layer comes first."""
    groups: List[List[nn.Module]] = []
    for layer in layers:
        if is_pointwise(layer) and not groups:
            return None
        if is_pointwise(layer):
            groups[-1].append(layer)
        else:
            groups.append([layer])
    return [(group, sliced_parts(group[0])) for group in groups]


def layerwise(segment_list: Sequence[tuple], options: dict,
              x: Tensor) -> Tensor:
    """The branch segment by segment, each checkpointed in its channel
    slices (:func:`channel_pieces`): in a backward only the segments'
    inputs and one slice's activations are alive."""
    for group, parts in segment_list:
        split = None if parts is None else partial(
            channel_pieces, group, parts, options)
        x = checkpoint_pieces(ResidualFunction(
            partial(run_layers, group), group, split), x)
    return x


def layerwise_branch(layers: Sequence[nn.Module],
                     options: dict) -> Optional[Callable[[Tensor], Tensor]]:
    """``layers`` run one after the other as :func:`layerwise`, or None
    when they cannot be segmented."""
    segment_list = segments(layers)
    if segment_list is None or all(p is None for _, p in segment_list):
        return None
    return partial(layerwise, segment_list, options)

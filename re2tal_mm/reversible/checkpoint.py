"""Activation checkpointing in pieces, for a layer outside a chain.

``torch.utils.checkpoint`` keeps a layer's input and recomputes the whole
layer in the backward, so the layer's activations are alive all at once
then (a ResNet stage's first block at 32 frames: about four times its
input). :func:`checkpoint_pieces` keeps the input too, but recomputes and
back-propagates the layer piece by piece (:class:`~.pieces.Piece`, as the
reversible chain does for its functions), so only one piece's activations
are alive at a time. The forward runs whole: it stores nothing, and unlike
a chain's no inversion needs the recompute to repeat it bit for bit (a
piece may round differently, as ``torch.utils.checkpoint``'s recompute may
with nondeterministic kernels). It is the same machinery as the chain's
backward (:func:`~.function.backward_pieces`) with the same contract: RNG and
autocast replayed, BatchNorm running statistics untouched by the
recompute, parameter gradients returned as ordinary outputs (a hook on a
parameter sees the layer's gradient once), double backward refused.
"""
from typing import Sequence

import torch
from torch import Tensor

from .coupling import (AutocastState, ResidualFunction, RNGState,
                       frozen_running_stats)
from .function import (DOUBLE_BACKWARD_ERROR, ParameterAliases,
                       backward_pieces, pieces_of, trainable_parameters)
from .pieces import Piece, take


def compute_pieces(pieces: Sequence[Piece], x: Tensor) -> Tensor:
    """The output of ``pieces`` on ``x``, their results written one after
    the other (a piece's ``write`` is a slice of one dimension)."""
    if len(pieces) == 1:
        return pieces[0].fn(take(x, pieces[0].read))
    dim = len(pieces[0].write) - 1
    out = None
    for piece in pieces:
        part = piece.fn(take(x, piece.read))
        if out is None:  # allocated once, at the output's full length
            shape = list(part.shape)
            shape[dim] = pieces[-1].write[dim].stop
            out = part.new_empty(shape)
        out[piece.write] = part
    return out


class PiecewiseCheckpointFunction(torch.autograd.Function):
    """``y = f(x)`` keeping only ``x``; the backward recomputes ``f`` piece
    by piece (``f.split``) and back-propagates each piece in turn."""

    @staticmethod
    def forward(ctx, x: Tensor, f: ResidualFunction,
                *params: Tensor) -> Tensor:
        ctx.f = f
        ctx.params = params
        ctx.autocast = AutocastState(x.device.type)
        ctx.rng_state = RNGState([x])
        ctx.save_for_backward(x)
        return f.fn(x)  # whole: nothing is stored for the backward

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD_ERROR)
        x, = ctx.saved_tensors
        params = [p for p, need in zip(ctx.params, ctx.needs_input_grad[2:])
                  if need]
        aliases = ParameterAliases(params)
        # pieces read overlapping halos: their input gradients add up
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        with frozen_running_stats(ctx.f.modules), ctx.rng_state.replay(), \
                ctx.autocast.replay():
            backward_pieces(ctx.f, x, grad_y, grad_x, aliases, params)
        return (grad_x, None, *(aliases.grad(p) for p in ctx.params))


def checkpoint_pieces(f: ResidualFunction, x: Tensor) -> Tensor:
    """``f.fn(x)``, checkpointed in ``f``'s pieces when a gradient is
    needed (else computed in pieces, no bookkeeping).

    Args:
        f (ResidualFunction): The layer as a function, its modules and its
            split (``split=None``: one piece, the whole layer).
        x (Tensor): Its input.
    """
    params = trainable_parameters([f])
    if not torch.is_grad_enabled() or not (x.requires_grad or params):
        return compute_pieces(pieces_of(f, x), x)
    return PiecewiseCheckpointFunction.apply(x, f, *params)

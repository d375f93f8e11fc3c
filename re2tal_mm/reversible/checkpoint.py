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
import torch
from torch import Tensor

from .coupling import (AutocastState, ResidualFunction, RNGState,
                       frozen_running_stats)
from .function import (DOUBLE_BACKWARD_ERROR, ParameterAliases,
                       backward_pieces, trainable_parameters)
from .pieces import WHOLE, Piece, add_at_


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
        grad_x = InputGradient(x)
        with frozen_running_stats(ctx.f.modules), ctx.rng_state.replay(), \
                ctx.autocast.replay():
            backward_pieces(ctx.f, x, grad_y,
                            grad_x if ctx.needs_input_grad[0] else None,
                            aliases, params)
        return (grad_x.total, None, *(aliases.grad(p) for p in ctx.params))


class InputGradient:
    """The input gradient of a layer computed in pieces, summed as each
    piece's arrives (pieces read overlapping halos, or all of the input).

    The first piece's gradient becomes the total when it covers the whole
    input (a piece reading everything, e.g. one of a layer's slices of
    output channels): no zero-filled buffer beside it.
    """

    def __init__(self, x: Tensor):
        self.x = x
        self.total = None

    def __call__(self, piece: Piece, grad: Tensor) -> None:
        if self.total is None and piece.read == WHOLE and \
                grad.shape == self.x.shape and grad.dtype == self.x.dtype:
            self.total = grad  # the piece's own leaf gradient, not shared
            return
        if self.total is None:
            self.total = torch.zeros_like(self.x)
        add_at_(self.total, piece.read, grad)


def checkpoint_pieces(f: ResidualFunction, x: Tensor) -> Tensor:
    """``f.fn(x)``, recomputed in the backward in ``f``'s pieces when a
    gradient is needed (else computed once, no bookkeeping).

    Args:
        f (ResidualFunction): The layer as a function, its modules and its
            split (``split=None``: one piece, the whole layer).
        x (Tensor): Its input.
    """
    params = trainable_parameters([f])
    if not torch.is_grad_enabled() or not (x.requires_grad or params):
        return f.fn(x)
    return PiecewiseCheckpointFunction.apply(x, f, *params)

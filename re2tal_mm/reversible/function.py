"""The autograd Function of a reversible chain and the stage runner."""
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from .coupling import (AutocastState, ResidualFunction, RNGState,
                       coupled_step, frozen_running_stats, merge_streams,
                       reconstruction_error, rewired_loop)

MODES = ('reversible', 'autograd')


def trainable_parameters(
        functions: Sequence[ResidualFunction]) -> List[Tensor]:
    """Unique parameters requiring grad of all functions, in order."""
    seen, params = set(), []
    for f in functions:
        for module in f.modules:
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


class ReversibleChainFunction(torch.autograd.Function):
    """Memory-free backprop through a rewired residual chain.

    The forward keeps only the two final streams; the backward walks the
    functions in reverse, rebuilds each input, recomputes ``F_k`` with grad
    enabled (replaying RNG and autocast state) and back-propagates through it.
    Parameter gradients are returned as ordinary Function outputs, so hooks on
    parameters (e.g. DDP) fire once per step.
    """

    @staticmethod
    def forward(ctx, x: Tensor, functions: Sequence[ResidualFunction],
                *params: Tensor) -> Tensor:
        ctx.functions = functions
        ctx.autocast = AutocastState(x.device.type)
        ctx.rng_states = []
        prev, cur = x, x
        for f in functions:
            ctx.rng_states.append(RNGState([cur]))
            prev, cur = coupled_step(prev, cur, f.fn)
        ctx.save_for_backward(prev, cur)
        ctx.num_params = len(params)
        return merge_streams(prev, cur)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        prev, cur = ctx.saved_tensors
        params = trainable_parameters(ctx.functions)
        index = {id(p): i for i, p in enumerate(params)}
        param_grads: List[Optional[Tensor]] = [None] * len(params)
        grad_prev = grad_cur = grad_out / 2
        for f, state in zip(reversed(ctx.functions), reversed(ctx.rng_states)):
            f_params = trainable_parameters([f])
            inp = prev.detach().requires_grad_(True)
            # running stats are restored only after the grad is taken:
            # BatchNorm's backward checks their version counters
            with frozen_running_stats(f.modules):
                with torch.enable_grad(), state.replay(), \
                        ctx.autocast.replay():
                    out = f.fn(inp)
                grads = torch.autograd.grad(
                    out, [inp] + f_params, grad_cur.to(out.dtype),
                    allow_unused=True)
            with torch.no_grad():
                rebuilt = cur - out.detach()
            for p, g in zip(f_params, grads[1:]):
                if g is None:
                    continue
                i = index[id(p)]
                param_grads[i] = g if param_grads[i] is None \
                    else param_grads[i] + g
            grad_inp = grads[0] if grads[0] is not None else 0
            # h_{k-2} gets grad_cur through the skip; h_{k-1} is complete now.
            prev, cur = rebuilt, prev
            grad_prev, grad_cur = grad_cur, grad_prev + grad_inp
            del inp, out, grads
        return (grad_prev + grad_cur, None, *param_grads)


def reversible_chain(functions: Sequence[ResidualFunction],
                     x: Tensor) -> Tensor:
    """Run a rewired chain, storing only its output when grads are needed.

    With nothing requiring a gradient (``torch.no_grad()`` or frozen input
    and parameters) the plain rewired loop runs without any bookkeeping.
    """
    params = trainable_parameters(functions)
    if not torch.is_grad_enabled() or not (x.requires_grad or params):
        return rewired_loop(functions, x)
    return ReversibleChainFunction.apply(x, functions, *params)


class RewiredStage:
    """Runtime record of one rewired stage (not an ``nn.Module``).

    Args:
        name (str): Dotted name of the stage in its backbone.
        num_functions (int): Number of residual functions in the chain.
        mode (str): ``'reversible'`` or ``'autograd'``.
    """

    def __init__(self, name: str, num_functions: int,
                 mode: str = 'reversible'):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.name = name
        self.num_functions = num_functions
        self.mode = mode
        self.probe = False
        self.last_error: Optional[float] = None

    def __call__(self, functions: Sequence[ResidualFunction],
                 x: Tensor) -> Tensor:
        if self.probe:
            self.last_error = reconstruction_error(functions, x)
        if self.mode == 'autograd':
            return rewired_loop(functions, x)
        return reversible_chain(functions, x)

    def __repr__(self) -> str:
        return (f'RewiredStage({self.name!r}, functions={self.num_functions},'
                f' mode={self.mode!r})')

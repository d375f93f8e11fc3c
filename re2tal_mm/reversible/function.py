"""The autograd Function of a reversible chain and the stage runner."""
from contextlib import contextmanager
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.profiler import record_function

from .coupling import (AutocastState, ResidualFunction, RNGState,
                       frozen_running_stats, merge_streams,
                       reconstruction_error, rewired_loop)
from .pieces import Piece, add_at_, take, whole_piece

MODES = ('reversible', 'autograd')


def trainable_parameters(
        functions: Sequence[Optional[ResidualFunction]]) -> List[Tensor]:
    """Unique parameters requiring grad of all functions, in order."""
    seen, params = set(), []
    for f in functions:
        if f is None:
            continue
        for module in f.modules:
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


def pieces_of(f: ResidualFunction, x: Tensor) -> Sequence[Piece]:
    """The pieces ``f`` is computed in (one when it offers no split)."""
    return f.split(x) if f.split is not None else [whole_piece(f.fn)]


# Private torch query (no public equivalent): is the running backward
# retaining the graph? Without it (another torch release) keeps_graph()
# answers True, which is always correct (tests/test_autograd_contract.py).
_KEEP_GRAPH_QUERY = getattr(torch._C._autograd,
                            '_get_current_graph_task_keep_graph', None)


def keeps_graph() -> bool:
    """Whether the running backward was asked to retain the graph (then the
    saved streams must not be consumed in place); ``True`` when torch cannot
    tell, at the cost of copying the two streams."""
    return True if _KEEP_GRAPH_QUERY is None else bool(_KEEP_GRAPH_QUERY())


DOUBLE_BACKWARD_ERROR = (
    'a reversible stage (or a layer it checkpoints in pieces) does not '
    'support double backward (create_graph=True: higher-order gradients, '
    'gradient penalties): its backward rebuilds the activations outside the '
    'graph, so second-order terms through the stage '
    "would be silently missing. Rewire the model with mode='autograd' (the "
    'same function, ordinary autograd) for higher-order gradients.')


class ParameterAliases:
    """Detached stand-ins for the parameters while functions are recomputed
    in the backward; each one's ``.grad`` sums its gradient over pieces and
    functions.

    The backward of a piece runs on the aliases, not on the parameters, so
    (as under autograd) hooks registered on a parameter see its gradient
    once, the stage's total, when the Function returns it; and a piece's
    parameter gradients are added up as autograd produces them, one
    parameter at a time, instead of all of a function's at once.
    ``wanted`` are the parameters to give gradients to (the ones trainable
    at the forward, even if frozen since: their aliases require grad).

    Args:
        wanted (Sequence[Tensor]): Parameters receiving gradients.
    """

    def __init__(self, wanted: Sequence[Tensor]):
        self.wanted = {id(p) for p in wanted}
        self.aliases: Dict[int, Tensor] = {}

    def of(self, p: Tensor) -> Tensor:
        alias = self.aliases.get(id(p))
        if alias is None:
            alias = p.detach().requires_grad_(id(p) in self.wanted)
            self.aliases[id(p)] = alias
        return alias

    @contextmanager
    def swapped(self, modules: Sequence[torch.nn.Module]):
        """The modules hold the aliases in place of their parameters inside
        the body (restored after)."""
        swaps = []
        for module in {id(m): m for top in modules
                       for m in top.modules()}.values():
            for name, p in module._parameters.items():
                if p is not None:
                    module._parameters[name] = self.of(p)
                    swaps.append((module, name, p))
        try:
            yield
        finally:
            for module, name, p in swaps:
                module._parameters[name] = p

    def grad(self, p: Tensor) -> Optional[Tensor]:
        alias = self.aliases.get(id(p))
        return None if alias is None else alias.grad


DIRECT_USE_ERROR = (
    'a residual function of a reversible stage used the parameter {name} '
    'directly, not as an attribute of one of its modules (e.g. captured in '
    'a functools.partial): its gradient would be lost. Read it from the '
    'module when the function runs (module.weight), or list the module that '
    "owns it in the function's modules.")


def check_direct_use(out: Tensor, f: ResidualFunction,
                     params: Sequence[Tensor]) -> None:
    """Refuse a recompute of ``f`` whose graph reaches one of ``params``
    itself rather than its alias (:data:`DIRECT_USE_ERROR`)."""
    ids = {id(p) for p in params}
    stack, seen = [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, 'variable', None)
        if variable is not None and id(variable) in ids:
            name = next((f'{type(m).__name__}.{n}' for m in f.modules
                         for n, p in m.named_parameters()
                         if p is variable), tuple(variable.shape))
            raise RuntimeError(DIRECT_USE_ERROR.format(name=name))
        stack.extend(next_node for next_node, _ in node.next_functions)


def backward_pieces(f: ResidualFunction, x: Tensor, grad_y: Tensor,
                    grad_x: Union[Tensor, Callable, None],
                    aliases: ParameterAliases,
                    f_params: Sequence[Tensor], on_output=None,
                    combine=None) -> None:
    """Recompute ``y = f(x)`` piece by piece and back-propagate ``grad_y``.

    ``grad_x[read] += dL/dx`` (or ``grad_x(piece, dL/dx)`` when it is a
    function; skipped when ``grad_x`` is None: nothing below needs it) and
    parameter gradients go to the ``.grad`` of their
    ``aliases``; ``on_output(piece, out)`` sees every recomputed piece (to
    rebuild a stream). ``combine(piece)`` maps the read input piece to
    ``f``'s input (e.g. merging two streams). Must run inside the replayed
    RNG/autocast.
    """
    wrt_params = [aliases.of(p) for p in f_params]
    for i, piece in enumerate(pieces_of(f, x)):
        part = take(x, piece.read)
        if combine is not None:
            part = combine(piece, part)
        inp = part.detach().requires_grad_(grad_x is not None)
        with torch.enable_grad(), aliases.swapped(f.modules), \
                record_function('re2tal.recompute'):
            out = piece.fn(inp)
        if i == 0 and out.requires_grad:
            check_direct_use(out, f, f_params)
        if on_output is not None:
            on_output(piece, out.detach())
        wrt = ([inp] if grad_x is not None else []) + wrt_params
        if not (wrt and out.requires_grad):
            continue
        # the backward starts from the output's gradient edge, so the
        # output itself (unless its graph saved it) is freed first
        edge = torch.autograd.graph.get_gradient_edge(out)
        grad = take(grad_y, piece.write).to(out.dtype)
        del out
        # the aliases stay in place: a checkpoint nested in ``f`` recomputes
        # in this backward, and must reach them too
        with record_function('re2tal.piece_backward'), \
                aliases.swapped(f.modules):
            # accumulates into the aliases' .grad as each is produced
            torch.autograd.backward(edge, grad, inputs=wrt)
        if callable(grad_x) and inp.grad is not None:
            grad_x(piece, inp.grad)
        elif grad_x is not None and inp.grad is not None:
            add_at_(grad_x, piece.read, inp.grad)


class ReversibleChainFunction(torch.autograd.Function):
    """Memory-free backprop through a rewired residual chain.

    The forward keeps only the two final streams; the backward walks the
    functions in reverse, rebuilds each input, recomputes ``F_k`` with grad
    enabled (replaying RNG and autocast state) and back-propagates through it.
    Functions offering a ``split`` are computed, recomputed and
    back-propagated piece by piece, and streams are updated in place, so
    besides the two streams (and their two gradients in the backward) only
    one piece's activations are alive at a time. An optional non-reversible
    ``tail`` (e.g. a patch merging after the stage) is applied to the merged
    output and recomputed from the two streams in the backward, so the merged
    output is never stored. Parameter gradients are returned as ordinary
    Function outputs, so hooks on parameters (e.g. DDP) fire once per step.

    The autograd contract:

    * the parameters given gradients are the ones passed to the forward
      (saved, never re-collected in the backward); of those, only the ones
      ``ctx.needs_input_grad`` asks for get one;
    * the recompute runs on stand-ins of the parameters
      (:class:`ParameterAliases`), so a hook on a parameter sees the
      stage's gradient once, and a function that uses a parameter tensor
      it captured instead of reading it from its module is refused;
    * no input gradient is computed when ``x`` needs none, and the walk stops
      below the lowest function with a trainable parameter then;
    * ``backward(retain_graph=True)`` may run again: the saved streams are
      then rebuilt in copies, so each backward gives the same gradients;
    * double backward raises (:data:`DOUBLE_BACKWARD_ERROR`) as soon as a
      backward through the stage is asked to build a graph.
    """

    @staticmethod
    def forward(ctx, x: Tensor, functions: Sequence[ResidualFunction],
                tail: Optional[ResidualFunction], *params: Tensor) -> Tensor:
        ctx.functions = functions
        ctx.tail = tail
        # what each function trains, as seen now: the backward gives exactly
        # these gradients even if requires_grad changes in between
        ctx.params = params
        ctx.function_params = [trainable_parameters([f]) for f in functions]
        ctx.tail_params = trainable_parameters([tail])
        ctx.autocast = AutocastState(x.device.type)
        ctx.rng_states = []
        prev, cur = x, x
        for f in functions:
            ctx.rng_states.append(RNGState([cur]))
            # h_k overwrites h_{k-2} in place, except when that is the input
            new = prev.clone(memory_format=torch.contiguous_format) \
                if prev is x else prev
            for piece in pieces_of(f, cur):
                add_at_(new, piece.write, piece.fn(take(cur, piece.read)))
            prev, cur = cur, new
        ctx.save_for_backward(prev, cur)
        if tail is None:  # merge_streams with one temporary less
            return torch.add(prev, cur).div_(2)
        ctx.tail_rng = RNGState([cur])
        tail_pieces = pieces_of(tail, cur)
        outs = [c.fn(merge_streams(take(prev, c.read), take(cur, c.read)))
                for c in tail_pieces]
        # the tail's pieces write consecutive slices along one dimension
        return outs[0] if len(outs) == 1 else \
            torch.cat(outs, dim=len(tail_pieces[0].write) - 1)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        # grad mode is on inside a backward only under create_graph=True;
        # refused here: a graph of these gradients would lack every path
        # through the stage (and its inputs are not even saved)
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD_ERROR)
        prev, cur = ctx.saved_tensors
        if keeps_graph():
            prev, cur = prev.clone(), cur.clone()
        wanted = {id(p) for p, need in zip(ctx.params,
                                           ctx.needs_input_grad[3:]) if need}
        params = [p for p in ctx.params if id(p) in wanted]

        def params_of(ps):
            return [p for p in ps if id(p) in wanted]

        aliases = ParameterAliases(params)
        functions = list(ctx.functions)
        f_params = [params_of(ps) for ps in ctx.function_params]
        need_x = ctx.needs_input_grad[0]
        # the lowest function whose input gradient (or own) is still needed
        lowest = 0 if need_x else next(
            (k for k, ps in enumerate(f_params) if ps), len(functions))
        return ReversibleChainFunction._walk_back(
            ctx, prev, cur, grad_out, aliases, need_x, lowest, f_params,
            params_of(ctx.tail_params))

    @staticmethod
    def _walk_back(ctx, prev, cur, grad_out, aliases, need_x, lowest,
                   f_params, tail_params):
        """The backward proper: from the output to ``lowest``."""
        functions = ctx.functions
        grad_prev = grad_out / 2 if ctx.tail is None else \
            ReversibleChainFunction._tail_backward(
                ctx, prev, cur, grad_out, aliases, tail_params)
        grad_cur = grad_prev.clone()
        for k in range(len(functions) - 1, lowest - 1, -1):
            f, state = functions[k], ctx.rng_states[k]
            # running stats are restored only after the grads are taken:
            # BatchNorm's backward checks their version counters
            with frozen_running_stats(f.modules), state.replay(), \
                    ctx.autocast.replay():
                # h_{k-2} = h_k - F_k(h_{k-1}), rebuilt in place of h_k
                backward_pieces(
                    f, prev, grad_cur,
                    grad_prev if need_x or k > lowest else None, aliases,
                    f_params[k],
                    on_output=lambda c, out, cur=cur: add_at_(
                        cur, c.write, out, alpha=-1))
            # h_{k-2} gets grad_cur through the skip; h_{k-1} is complete now
            prev, cur = cur, prev
            grad_prev, grad_cur = grad_cur, grad_prev
        grad_x = grad_prev.add_(grad_cur) if need_x else None
        return (grad_x, None, None, *(aliases.grad(p) for p in ctx.params))

    @staticmethod
    def _tail_backward(ctx, prev, cur, grad_out, aliases,
                       tail_params) -> Tensor:
        """Back-propagate through ``tail(merge(prev, cur))``; returns the
        gradient of each stream (half that of the merged output)."""
        grad_merged = torch.zeros_like(cur,
                                       memory_format=torch.contiguous_format)
        tail = ctx.tail
        with frozen_running_stats(tail.modules), ctx.tail_rng.replay(), \
                ctx.autocast.replay():
            backward_pieces(
                tail, cur, grad_out, grad_merged, aliases, tail_params,
                combine=lambda c, cur_piece: merge_streams(
                    take(prev, c.read), cur_piece))
        return grad_merged.div_(2)


def reversible_chain(functions: Sequence[ResidualFunction], x: Tensor,
                     tail: Optional[ResidualFunction] = None) -> Tensor:
    """Run a rewired chain (then ``tail``), storing only its two streams
    when grads are needed.

    With nothing requiring a gradient (``torch.no_grad()`` or frozen input
    and parameters) the plain rewired loop runs without any bookkeeping.
    """
    params = trainable_parameters(list(functions) + [tail])
    if not torch.is_grad_enabled() or not (x.requires_grad or params):
        y = rewired_loop(functions, x)
        return y if tail is None else tail.fn(y)
    return ReversibleChainFunction.apply(x, functions, tail, *params)


class RewiredStage:
    """Runtime record of one rewired stage (not an ``nn.Module``).

    Args:
        name (str): Dotted name of the stage in its backbone.
        num_functions (int): Number of residual functions in the chain.
        mode (str): ``'reversible'`` or ``'autograd'``.
            Defaults to ``'reversible'``.
        bounds (tuple, optional): ``(start, stop)`` indices of the chained
            blocks in the stage module's block list. Defaults to None
            (all of them).
        options (dict, optional): The adapter's options for this stage
            (what its replacement forward reads). Defaults to None.
    """

    def __init__(self, name: str, num_functions: int,
                 mode: str = 'reversible',
                 bounds: Optional[Tuple[int, int]] = None,
                 options: Optional[Dict[str, Any]] = None):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.name = name
        self.num_functions = num_functions
        self.mode = mode
        self.bounds = bounds
        self.options = dict(options or {})
        self.probe = False
        self.last_error: Optional[float] = None

    def __call__(self, functions: Sequence[ResidualFunction], x: Tensor,
                 tail: Optional[ResidualFunction] = None) -> Tensor:
        """Run the chain on ``x``, then ``tail`` (non-reversible, fused so
        that in ``'reversible'`` mode it is recomputed from the streams)."""
        if self.probe:
            self.last_error = reconstruction_error(functions, x)
        if self.mode == 'autograd':
            y = rewired_loop(functions, x)
            return y if tail is None else tail.fn(y)
        return reversible_chain(functions, x, tail)

    def __repr__(self) -> str:
        return (f'RewiredStage({self.name!r}, functions={self.num_functions},'
                f' mode={self.mode!r})')

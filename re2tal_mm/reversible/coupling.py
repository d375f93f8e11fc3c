"""Coupling arithmetic of Re2TAL's rewired residual chain (pure PyTorch).

A stage whose residual chain is ``h_k = h_{k-1} + F_k(h_{k-1})`` is rewired to
skip one more function::

    h_{-1} = h_0 = x,   h_k = h_{k-2} + F_k(h_{k-1}),   y = (h_{n-1} + h_n) / 2

which is invertible: ``h_{k-2} = h_k - F_k(h_{k-1})``.
"""
from contextlib import contextmanager
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import get_device_states, set_device_states


class ResidualFunction(NamedTuple):
    """One residual function ``F_k`` of a chain.

    Args:
        fn (Callable[[Tensor], Tensor]): Computes the residual branch.
        modules (Sequence[nn.Module]): The modules ``fn`` uses; their
            parameters receive gradients and their BatchNorm statistics are
            protected during the recompute.
        split (Callable, optional): ``split(x)`` returns the pieces
            (:class:`~.pieces.Piece`) ``fn(x)`` can be computed in; the
            reversible engine then runs the forward, the recompute and its
            backward piece by piece. It is called once per (re)computation
            inside the replayed RNG state, so it may draw random numbers
            (e.g. a drop-path mask) that all pieces share.
    """
    fn: Callable[[Tensor], Tensor]
    modules: Sequence[nn.Module]
    split: Optional[Callable[[Tensor], Sequence]] = None


def coupled_step(prev: Tensor, cur: Tensor,
                 fn: Callable) -> Tuple[Tensor, Tensor]:
    """Advance the two streams: ``(h_{k-2}, h_{k-1}) -> (h_{k-1}, h_k)``."""
    return cur, prev + fn(cur)


def merge_streams(prev: Tensor, cur: Tensor) -> Tensor:
    """Stage output ``(h_{n-1} + h_n) / 2``."""
    return (prev + cur) / 2


def rewired_loop(functions: Sequence[ResidualFunction], x: Tensor) -> Tensor:
    """The rewired function computed with ordinary autograd (or none)."""
    prev, cur = x, x
    for f in functions:
        prev, cur = coupled_step(prev, cur, f.fn)
    return merge_streams(prev, cur)


class RNGState:
    """CPU and device RNG states captured before one function runs.

    Mirrors ``torch.utils.checkpoint``: the states are restored inside
    ``torch.random.fork_rng`` so the global generators are left untouched.

    Args:
        tensors (Sequence[Tensor]): Tensors whose devices are captured.
    """

    def __init__(self, tensors: Sequence[Tensor]):
        self.cpu_state = torch.get_rng_state()
        self.devices, self.device_states = get_device_states(*tensors)

    @contextmanager
    def replay(self):
        """Run the body with the captured states, restoring the global ones."""
        with torch.random.fork_rng(devices=self.devices, enabled=True):
            torch.set_rng_state(self.cpu_state)
            if self.devices:
                set_device_states(self.devices, self.device_states)
            yield


class AutocastState:
    """Autocast settings of the forward, replayed in the recompute.

    Args:
        device_type (str): Device type of the chain's input.
    """

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.enabled = torch.is_autocast_enabled(device_type)
        self.dtype = torch.get_autocast_dtype(device_type)
        self.cache_enabled = torch.is_autocast_cache_enabled()

    def replay(self):
        """An autocast context equal to the forward's."""
        return torch.autocast(self.device_type, dtype=self.dtype,
                              enabled=self.enabled,
                              cache_enabled=self.cache_enabled)


@contextmanager
def frozen_running_stats(modules: Sequence[nn.Module]):
    """Restore BatchNorm running statistics changed inside the body.

    The recompute runs BatchNorm in train mode (same batch statistics as the
    forward) but the running statistics must be updated once per step.
    """
    saved: List[Tuple[_BatchNorm, List[Tensor]]] = []
    for module in modules:
        for m in module.modules():
            if isinstance(m, _BatchNorm) and m.training and \
                    m.track_running_stats and m.running_mean is not None:
                saved.append((m, [m.running_mean.clone(),
                                  m.running_var.clone(),
                                  m.num_batches_tracked.clone()]))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


def relative_error(estimate: Tensor, target: Tensor) -> float:
    """``||estimate - target|| / ||target||`` computed in float64."""
    target = target.double()
    diff = (estimate.double() - target).norm()
    return (diff / target.norm().clamp_min(1e-300)).item()


@torch.no_grad()
def reconstruction_error(functions: Sequence[ResidualFunction],
                         x: Tensor) -> float:
    """Relative error of rebuilding ``x`` from the two final streams.

    Runs the chain forward and back again with replayed RNG states (as the
    backward does) and leaves the global RNG and BatchNorm statistics as they
    were. Useful as a numerical drift monitor, e.g. under AMP.
    """
    device_type = x.device.type
    autocast = AutocastState(device_type)
    states = []
    with frozen_running_stats([m for f in functions for m in f.modules]):
        with torch.random.fork_rng(devices=get_device_states(x)[0]):
            prev, cur = x, x
            for f in functions:
                states.append(RNGState([cur]))
                prev, cur = coupled_step(prev, cur, f.fn)
        for f, state in zip(reversed(functions), reversed(states)):
            with state.replay(), autocast.replay():
                prev, cur = cur - f.fn(prev), prev
    return max(relative_error(prev, x), relative_error(cur, x))

"""The reversible Function's autograd contract, on every adapter (float64).

Double backward (``create_graph=True``) raises (never a silently wrong
second-order gradient); ``backward(retain_graph=True)`` twice accumulates
exactly twice; frozen parameters get no gradient and an input that needs none
gets none (the walk stops early); the parameters given gradients are those of
the forward.
"""
import copy

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.reversible import (ResidualFunction, function, relative_error,
                                  reversible_chain, rewired_loop)
from re2tal_mm.rewiring import rewire, rewired_stages

from .test_reversible import small_slowfast, small_swin
from .test_rewiring_zoo import CASES as ZOO
from .test_rewiring_zoo import flat

torch.set_num_threads(1)

BUILDERS = {
    'swin': (lambda: small_swin(drop_path_rate=0.3), (1, 3, 4, 32, 32)),
    'slowfast': (small_slowfast, (2, 3, 8, 32, 32)),
    **{name: (builder, shape) for name, (builder, shape, _) in ZOO.items()
       if name in ('vit', 'mvit', 'x3d', 'resnet', 'tsm')},
}


def build(name, mode='reversible'):
    torch.manual_seed(0)
    builder, shape = BUILDERS[name]
    model = builder().double()
    model.train()
    rewire(model, mode)
    return model, torch.randn(shape, dtype=torch.float64)


def loss_of(model, x, seed=1):
    torch.manual_seed(seed)  # the same drop-path masks in every call
    outs = flat(model(x))
    gen = torch.Generator().manual_seed(2)
    return sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
               for o in outs)


def grads_of(model):
    return {n: None if p.grad is None else p.grad.clone()
            for n, p in model.named_parameters()}


@pytest.mark.parametrize('name', list(BUILDERS))
def test_double_backward_raises_and_autograd_mode_supports_it(name):
    model, x = build(name)
    x.requires_grad_(True)
    with pytest.raises(RuntimeError, match="mode='autograd'"):
        torch.autograd.grad(loss_of(model, x), x, create_graph=True)
    # first-order gradients are unaffected, and autograd mode gives the
    # second-order ones
    (gx, ) = torch.autograd.grad(loss_of(model, x), x)
    rewire(model, 'autograd')
    (gx_ref, ) = torch.autograd.grad(loss_of(model, x), x, create_graph=True)
    assert relative_error(gx, gx_ref.detach()) < 1e-10
    (ggx, ) = torch.autograd.grad(gx_ref.square().sum(), x)
    assert ggx.abs().sum() > 0


@pytest.mark.parametrize('name', list(BUILDERS))
def test_retain_graph_twice_accumulates_twice(name):
    model, x = build(name)
    loss = loss_of(model, x)
    loss.backward(retain_graph=True)
    once = grads_of(model)
    loss.backward()
    twice = grads_of(model)
    assert any(g is not None for g in once.values())
    for n, g in once.items():
        if g is not None:
            assert relative_error(twice[n], 2 * g) < 1e-12, n


@pytest.mark.parametrize('name', list(BUILDERS))
def test_frozen_parameters_and_input_without_grad(name):
    """Every other parameter frozen, input without grad: the trainable ones
    get autograd's gradients, the frozen ones none."""
    ref, x = build(name, 'autograd')
    rev = copy.deepcopy(ref)
    rewire(rev, 'reversible')
    for model in (ref, rev):
        for i, p in enumerate(model.parameters()):
            p.requires_grad_(i % 2 == 1)
    loss_of(ref, x).backward()
    loss_of(rev, x).backward()
    assert x.grad is None
    g_ref, g_rev = grads_of(ref), grads_of(rev)
    frozen = [n for n, p in rev.named_parameters() if not p.requires_grad]
    assert frozen and all(g_rev[n] is None for n in frozen)
    floor = 1e-6 * max(g.norm() for g in g_ref.values() if g is not None)
    for n, g in g_ref.items():
        if g is None:
            assert g_rev[n] is None, n
            continue
        err = ((g_rev[n] - g).norm() / max(g.norm(), floor)).item()
        assert err < 1e-10, n


def toy_chain(n=4, width=5):
    torch.manual_seed(0)
    lins = [torch.nn.Linear(width, width).double() for _ in range(n)]
    fns = [ResidualFunction(lambda t, m=m: torch.tanh(m(t)), [m])
           for m in lins]
    return lins, fns


def test_walk_stops_below_the_lowest_trainable_function(monkeypatch):
    calls = []
    original = function.backward_pieces

    def spy(f, x, grad_y, grad_x, *args, **kwargs):
        calls.append(grad_x is None)
        return original(f, x, grad_y, grad_x, *args, **kwargs)

    monkeypatch.setattr(function, 'backward_pieces', spy)
    lins, fns = toy_chain()
    for m in lins[:2]:
        m.requires_grad_(False)
    x = torch.randn(3, 5, dtype=torch.float64)
    reversible_chain(fns, x).square().sum().backward()
    # functions 3 and 2 (0-based) run; 2 needs no input gradient; 1, 0 skip
    assert calls == [False, True]
    grads = [p.grad.clone() for m in lins[2:] for p in m.parameters()]
    for m in lins[2:]:
        m.zero_grad()
    rewired_loop(fns, x).square().sum().backward()
    for g, m in zip(grads, [p for m in lins[2:] for p in m.parameters()]):
        assert torch.allclose(g, m.grad, rtol=1e-12, atol=1e-14)
    assert all(p.grad is None for m in lins[:2] for p in m.parameters())


@pytest.mark.parametrize('toggle', ['freeze', 'unfreeze'])
def test_gradients_go_to_the_parameters_of_the_forward(toggle):
    """``requires_grad`` changed between forward and backward: every
    gradient still lands on its own parameter, exactly as under autograd
    (a parameter list collected again in the backward would shift them)."""
    results = []
    for run in (rewired_loop, reversible_chain):
        lins, fns = toy_chain()
        if toggle == 'unfreeze':
            lins[1].weight.requires_grad_(False)
        x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
        out = run(fns, x)
        lins[1].weight.requires_grad_(toggle == 'unfreeze')
        out.square().sum().backward()
        results.append([p.grad for m in lins for p in m.parameters()] +
                       [x.grad])
    assert results[0][2] is None  # lins[1].weight: no gradient either way
    for a, b in zip(*results):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_keep_graph_fallback_without_private_torch_api(monkeypatch):
    """Without torch's private keep-graph query the streams are copied:
    the same gradients, once and twice."""
    model, x = build('swin')
    loss_of(model, x).backward()
    expected = grads_of(model)
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(function, '_KEEP_GRAPH_QUERY', None)
    assert function.keeps_graph()
    loss = loss_of(model, x)
    loss.backward(retain_graph=True)
    assert all(relative_error(grads_of(model)[n], g) < 1e-12
               for n, g in expected.items() if g is not None)
    loss.backward()
    assert all(relative_error(grads_of(model)[n], 2 * g) < 1e-12
               for n, g in expected.items() if g is not None)
    assert rewired_stages(model)


@pytest.mark.parametrize('name', list(BUILDERS))
def test_parameter_hooks_see_the_stage_gradient_once(name):
    """A hook on a parameter (here: doubling, and counting calls) runs once
    per backward on the whole gradient, as under autograd: the recompute
    back-propagates through stand-ins of the parameters, so the pieces'
    partial gradients never reach the hook (they once did, once per piece
    and again on the total: a doubling hook quadrupled)."""
    results = []
    for mode in ('autograd', 'reversible'):
        model, x = build(name, 'autograd')
        rewire(model, mode, memory='floor')  # pieces where the model has any
        calls = []

        def hook(g, calls=calls):
            calls.append(1)
            return 2 * g

        handles = [p.register_hook(hook) for p in model.parameters()]
        loss_of(model, x).backward()
        for h in handles:
            h.remove()
        results.append((grads_of(model), len(calls)))
    (g_ref, n_ref), (g_rev, n_rev) = results
    assert n_rev == n_ref == sum(g is not None for g in g_ref.values())
    # some gradients are zero up to rounding (a bias before a softmax)
    floor = 1e-6 * max(g.norm() for g in g_ref.values() if g is not None)
    for n, g in g_ref.items():
        if g is not None:
            err = ((g_rev[n] - g).norm() / max(g.norm(), floor)).item()
            assert err < 1e-10, n


def test_a_parameter_used_directly_is_refused():
    """A function that captured a parameter tensor (not read from its module
    at call time) would lose its gradient in the backward: refused."""
    lins, fns = toy_chain()
    weight = lins[1].weight
    fns[1] = ResidualFunction(lambda t: torch.tanh(t @ weight.T), [lins[1]])
    x = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r'Linear.weight directly'):
        reversible_chain(fns, x).square().sum().backward()

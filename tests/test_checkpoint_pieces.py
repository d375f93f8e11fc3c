"""Checkpointing in pieces (``reversible.checkpoint_pieces``) and the
ResNet family's ``'floor'`` preset built on it: a checkpointed stem and
first blocks recomputed piece by piece, exact in float64."""
import copy
from functools import partial

import pytest
import torch
from torch import nn

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.reversible import Piece, ResidualFunction
from re2tal_mm.reversible import checkpoint as checkpoint_module
from re2tal_mm.reversible import checkpoint_pieces, function, relative_error
from re2tal_mm.rewiring import rewire, rewiring_report, unwire
from re2tal_mm.rewiring.pieces import conv_halo, split_branch

from mmaction.models.backbones import X3D, ResNet3dSlowFast
from .test_reversible import SMALL_SLOWFAST

torch.set_num_threads(1)


def conv_layer(bn_train=False):
    """A local layer (kernels 3 in time, spatial stride 2): conv, BN, ReLU,
    conv."""
    torch.manual_seed(0)
    layer = nn.Sequential(
        nn.Conv3d(3, 4, (3, 1, 1), padding=(1, 0, 0)), nn.BatchNorm3d(4),
        nn.ReLU(), nn.Conv3d(4, 5, 3, padding=1, stride=(1, 2, 2)))
    layer = layer.double()
    layer[1].running_mean.uniform_(-1, 1)
    layer[1].train(bn_train)
    return layer


def split_function(layer, pieces):
    halo = conv_halo(layer, [layer])
    split = None if halo is None else \
        partial(split_branch, layer, halo, dict(pieces=pieces))
    return ResidualFunction(layer, [layer], split)


def grads_of(layer, x, fn):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    gen = torch.Generator().manual_seed(3)
    (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum().backward()
    return y, x.grad, {n: p.grad.clone() for n, p in
                       layer.named_parameters()}


def test_pieces_equal_autograd_and_are_pieces(monkeypatch):
    layer = conv_layer()
    x = torch.randn(2, 3, 7, 8, 8, dtype=torch.float64)
    y_ref, gx_ref, g_ref = grads_of(layer, x, layer)
    layer.zero_grad(set_to_none=True)
    f = split_function(layer, pieces=3)
    calls = []  # the forward runs whole, the backward in pieces
    monkeypatch.setattr(function, 'pieces_of',
                        lambda f, t: calls.append(1) or f.split(t))
    y, gx, g = grads_of(layer, x, partial(checkpoint_pieces, f))
    assert len(f.split(x)) == 3 and len(calls) == 1
    assert type(y.grad_fn).__name__ == 'PiecewiseCheckpointFunctionBackward'
    assert torch.equal(y, y_ref)  # the forward is the layer's own
    assert relative_error(gx, gx_ref) < 1e-12
    assert all(relative_error(g[n], g_ref[n]) < 1e-12 for n in g_ref)


def test_autograd_contract():
    layer = conv_layer()
    f = split_function(layer, pieces=3)
    x = torch.randn(1, 3, 6, 8, 8, dtype=torch.float64, requires_grad=True)
    seen = []
    layer[0].weight.register_hook(lambda g: seen.append(g))
    y = checkpoint_pieces(f, x)
    y.sum().backward(retain_graph=True)
    once = layer[0].weight.grad.clone()
    assert len(seen) == 1  # the layer's gradient, once
    y.sum().backward()  # again: the saved input is intact
    torch.testing.assert_close(layer[0].weight.grad, 2 * once, rtol=1e-12,
                               atol=0)
    with pytest.raises(RuntimeError, match='double backward'):
        torch.autograd.grad(checkpoint_pieces(f, x).sum(), x,
                            create_graph=True)
    # an input without gradient gets none; frozen parameters neither
    layer[3].requires_grad_(False)
    layer.zero_grad(set_to_none=True)
    checkpoint_pieces(f, x.detach()).sum().backward()
    assert layer[3].weight.grad is None and layer[0].weight.grad is not None


def test_input_gradient_of_a_whole_piece_is_taken_as_is():
    """A piece reading the whole input hands over its gradient (no
    zero-filled buffer beside it); later pieces add into it, and a first
    piece reading a slice starts from zeros."""
    x = torch.zeros(2, 3, 4)
    whole, part = Piece((), (), None), Piece(
        (slice(None), slice(None), slice(1, 3)), (), None)
    total = checkpoint_module.InputGradient(x)
    first = torch.ones(2, 3, 4)
    total(whole, first)
    total(part, torch.ones(2, 3, 2))
    assert total.total is first
    assert total.total[..., 1:3].eq(2).all()
    assert total.total[..., 0].eq(1).all()
    sliced = checkpoint_module.InputGradient(x)
    sliced(part, torch.ones(2, 3, 2))
    assert sliced.total.sum() == 12 and sliced.total[..., 0].eq(0).all()


def test_batchnorm_in_train_mode_whole_and_updated_once():
    """Batch statistics are not local: no split; the running statistics
    move once per step, as under autograd."""
    layer, ref = conv_layer(bn_train=True), conv_layer(bn_train=True)
    f = split_function(layer, pieces=3)
    assert f.split is None
    x = torch.randn(2, 3, 5, 8, 8, dtype=torch.float64)
    _, gx_ref, g_ref = grads_of(ref, x, ref)
    _, gx, g = grads_of(layer, x, partial(checkpoint_pieces, f))
    assert relative_error(gx, gx_ref) < 1e-12
    assert all(relative_error(g[n], g_ref[n]) < 1e-12 for n in g_ref)
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        assert torch.equal(getattr(layer[1], name), getattr(ref[1], name))


# the Re2TAL recipes' lateral kernel, BatchNorm frozen (local: pieces of
# time); BatchNorm training: layer by layer (tests/test_channel_pieces.py)
SLOWFAST = copy.deepcopy(SMALL_SLOWFAST)
SLOWFAST['slow_pathway'].update(fusion_kernel=7, norm_eval=True)
SLOWFAST['fast_pathway'].update(norm_eval=True)
# (builder, input)
CASES = {
    'slowfast-frozen-bn': (lambda: ResNet3dSlowFast(**SLOWFAST),
                           (1, 3, 16, 32, 32)),
    # OpenTAD's first-block form: the ReLU on the branch
    'slowfast-frozen-bn-opentad': (lambda: ResNet3dSlowFast(**SLOWFAST),
                                   (1, 3, 16, 32, 32)),
    'x3d-training-bn': (lambda: X3D(gamma_w=0.5, num_stages=2,
                                    spatial_strides=(2, 2), gamma_d=2,
                                    se_style='half'), (2, 3, 4, 32, 32)),
}


def step(model, x):
    x = x.clone().requires_grad_(True)
    outs = model(x)
    outs = outs if isinstance(outs, tuple) else (outs, )
    gen = torch.Generator().manual_seed(2)
    sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
        for o in outs).backward()
    return x.grad, {n: p.grad for n, p in model.named_parameters()
                    if p.requires_grad}


@pytest.mark.parametrize('name', list(CASES))
def test_floor_stem_and_first_blocks_exact(name):
    """``memory='floor'`` on the ResNet family: the stem checkpointed as
    one function, the first blocks in pieces where local; gradients and
    BatchNorm statistics those of ``'autograd'`` (the upstream stem and
    block forwards) in float64."""
    builder, shape = CASES[name]
    torch.manual_seed(0)
    ref = builder().double()
    ref.train()  # X3D's train() returns None
    floor = copy.deepcopy(ref)
    form = 'opentad' if name.endswith('opentad') else 'mmaction'
    rewire(ref, 'autograd', first_block=form)
    rewire(floor, 'reversible', memory='floor', pieces=2, first_block=form)
    report = rewiring_report(floor)
    stems = [n for n, p in report.non_reversible if p == 'checkpoint' and
             n.split('.')[-1] in ('conv1', 'maxpool', 'conv1_s', 'conv1_t')]
    assert stems, report.non_reversible
    first_blocks = []
    original = checkpoint_module.PiecewiseCheckpointFunction.apply
    with pytest.MonkeyPatch.context() as m:
        m.setattr(checkpoint_module.PiecewiseCheckpointFunction, 'apply',
                  lambda *a: first_blocks.append(a[1]) or original(*a))
        x = torch.randn(shape, dtype=torch.float64)
        gx, g = step(floor, x)
    gx_ref, g_ref = step(ref, x)
    # frozen BatchNorm: whole first blocks in pieces of time; training
    # BatchNorm: their layers, one at a time (tests/test_channel_pieces.py)
    whole_blocks = [f for f in first_blocks
                    if any(type(m).__name__.startswith(('Bottleneck', 'Block'))
                           for m in f.modules)]
    assert bool(whole_blocks) == ('frozen-bn' in name)
    assert first_blocks
    assert relative_error(gx, gx_ref) < 1e-10
    scale = max(t.norm() for t in g_ref.values())
    assert g.keys() == g_ref.keys()
    assert max((g[n] - g_ref[n]).norm() / max(g_ref[n].norm(), 1e-6 * scale)
               for n in g_ref) < 1e-10
    for (n, b), (_, b_ref) in zip(floor.named_buffers(),
                                  ref.named_buffers()):
        assert torch.equal(b, b_ref), n
    unwire(floor)
    assert all('forward' not in m.__dict__ for m in floor.modules())

"""Piecewise recompute: the same gradients as whole tensors."""
import pytest
import torch
from torch import nn

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.engine.memory_probe import KeptBytesProbe
from re2tal_mm.reversible import (Piece, ResidualFunction, num_pieces,
                                  reversible_chain, rewired_loop, split_range)
from re2tal_mm.reversible.pieces import add_at_, take
from re2tal_mm.rewiring import (non_reversible_layers, rewire, rewired_stages,
                                unwire)
from re2tal_mm.rewiring.pieces import conv_halo
from re2tal_mm.rewiring.resnet3d import ResNet3dAdapter
from re2tal_mm.rewiring.swin import LazyMask
from re2tal_mm.rewiring.swin import layer_functions as block_functions

from mmaction.models.backbones import ResNet3d, SwinTransformer3D

torch.set_num_threads(1)
TOL = 1e-10


def tiny_swin(drop_path_rate=0.0):
    # window 2x4x4 on a 6x10x10 token grid: shifted windows wrap around and
    # height and width are padded, so every path of the split is taken
    return SwinTransformer3D(
        arch=dict(embed_dims=16, depths=(2, 2), num_heads=(2, 2)),
        window_size=(2, 4, 4), pretrained=None, pretrained2d=False,
        drop_path_rate=drop_path_rate, out_indices=(1, ))


def tiny_resnet(norm_eval=True):
    return ResNet3d(depth=50, pretrained=None, pretrained2d=False,
                    base_channels=4, num_stages=2, stage_blocks=(3, 3),
                    out_indices=(1, ), norm_eval=norm_eval,
                    inflate=((1, 1, 1), (1, 1, 1)), inflate_style='3x3x3',
                    conv1_kernel=(1, 3, 3), spatial_strides=(1, 2),
                    temporal_strides=(1, 1), dilations=(1, 1))


def double_train(model):
    """``model`` in float64 and train mode (mm backbones' ``train`` returns
    None)."""
    model.double()
    model.train()
    return model


def step(model, x, seed=1):
    """Output, input grad and parameter grads of one weighted-sum step."""
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    out = model(x)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
    (out * weight.view_as(out)).sum().backward()
    grads = [x.grad] + [p.grad.clone() if p.grad is not None else None
                        for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return out.detach(), grads


def max_rel(a_list, b_list):
    errs = []
    for a, b in zip(a_list, b_list):
        assert (a is None) == (b is None)
        if a is not None:
            errs.append(((a - b).norm() / a.norm().clamp_min(1e-30)).item())
    return max(errs)


def run(model, x, mode, **options):
    rewire(model, mode, **options)
    return step(model, x)


@pytest.mark.parametrize('drop_path_rate', [0.0, 0.3])
def test_swin_pieces_equal_whole_and_autograd(drop_path_rate):
    torch.manual_seed(0)
    model = double_train(tiny_swin(drop_path_rate))
    x = torch.randn(2, 3, 12, 40, 40, dtype=torch.float64)
    out_a, grads_a = run(model, x, 'autograd')
    out_w, grads_w = run(model, x, 'reversible')
    out_c, grads_c = run(model, x, 'reversible', pieces=5,
                         windows_per_call=3)
    out_f, grads_f = run(model, x, 'reversible', pieces=20)  # 27 boxes
    assert max_rel(grads_a, grads_f) <= TOL
    assert torch.equal(out_a, out_w)
    assert torch.allclose(out_a, out_c, rtol=1e-13, atol=1e-13)
    assert max_rel(grads_a, grads_w) <= TOL
    assert max_rel(grads_a, grads_c) <= TOL
    assert max_rel(grads_w, grads_c) <= TOL


def test_swin_split_covers_the_stream_once():
    torch.manual_seed(0)
    model = tiny_swin().double()
    model.eval()
    layer = model.layers[0]
    from mmaction.models.backbones.swin import get_window_size
    x = torch.randn(1, 6, 10, 10, 16, dtype=torch.float64)
    ws, ss = get_window_size((6, 10, 10), layer.window_size,
                             layer.shift_size)
    mask = LazyMask(6, 12, 12, ws, ss, x.device)
    for f in block_functions(layer, mask, dict(pieces=4, piece_mib=None)):
        pieces = f.split(x)
        assert len(pieces) >= 4
        out = torch.zeros_like(x)
        count = torch.zeros_like(x)
        for c in pieces:
            piece = c.fn(take(x, c.read))
            add_at_(out, c.write, piece)
            add_at_(count, c.write, torch.ones_like(piece))
        assert torch.equal(count, torch.ones_like(count))
        with torch.no_grad():
            assert torch.allclose(out, f.fn(x), rtol=1e-13, atol=1e-13)


def test_resnet_time_pieces_with_halo_equal_whole():
    torch.manual_seed(0)
    model = double_train(tiny_resnet(norm_eval=True))
    block = model.layer1[1]
    assert conv_halo(block, ResNet3dAdapter.branch_layers(block)) == 1
    x = torch.randn(2, 3, 9, 16, 16, dtype=torch.float64)
    pieces = ResNet3dAdapter.function(block, dict(pieces=3)).split(
        torch.zeros(1, 16, 9, 4, 4))
    assert [c.read[2] for c in pieces] == [slice(0, 4), slice(2, 7),
                                           slice(5, 9)]
    out_a, grads_a = run(model, x, 'autograd')
    out_c, grads_c = run(model, x, 'reversible', pieces=3)
    out_m, grads_m = run(model, x, 'reversible', piece_mib=1e-3)
    assert torch.allclose(out_a, out_c, rtol=1e-13, atol=1e-13)
    assert max_rel(grads_a, grads_c) <= TOL
    assert max_rel(grads_a, grads_m) <= TOL


def test_resnet_batch_statistics_run_whole_and_update_stats_once():
    torch.manual_seed(0)
    model = double_train(tiny_resnet(norm_eval=False))
    block = model.layer1[1]
    assert ResNet3dAdapter.function(block, dict(pieces=3)).split is None
    x = torch.randn(2, 3, 4, 16, 16, dtype=torch.float64)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    start = [(m.running_mean.clone(), m.num_batches_tracked.clone())
             for m in bns]
    _, grads_a = run(model, x, 'autograd')
    after_a = [(m.running_mean.clone(), m.num_batches_tracked.clone())
               for m in bns]
    for m, (mean, count) in zip(bns, start):
        m.running_mean.copy_(mean)
        m.num_batches_tracked.copy_(count)
    _, grads_c = run(model, x, 'reversible', pieces=3)
    assert max_rel(grads_a, grads_c) <= TOL
    for m, (mean, count) in zip(bns, after_a):
        assert torch.allclose(m.running_mean, mean, rtol=1e-12, atol=0)
        assert torch.equal(m.num_batches_tracked, count)


@pytest.mark.parametrize('options', [
    dict(merging='recompute'),
    dict(merging='recompute', pieces=3),
    dict(merging='checkpoint', pieces=2),
])
def test_non_reversible_options_same_grads(options):
    torch.manual_seed(0)
    model = double_train(tiny_swin(0.2))
    x = torch.randn(1, 3, 12, 40, 40, dtype=torch.float64)
    out_a, grads_a = run(model, x, 'autograd')
    out_o, grads_o = run(model, x, 'reversible', **options)
    assert torch.allclose(out_a, out_o, rtol=1e-13, atol=1e-13)
    assert max_rel(grads_a, grads_o) <= TOL
    if options['merging'] == 'recompute':  # fused into the stage
        assert rewired_stages(model)[0].options['fuse_merging']
    unwire(model)
    assert 'forward' not in model.layers[0].downsample.__dict__
    rewire(model, 'autograd')
    assert torch.equal(step(model, x)[0], out_a)


def test_frozen_patch_embed_same_other_grads_and_unwire_restores():
    torch.manual_seed(0)
    model = double_train(tiny_swin())
    x = torch.randn(1, 3, 12, 40, 40, dtype=torch.float64)
    out_a, grads_a = run(model, x, 'autograd')
    rewire(model, 'reversible', freeze_patch_embed=True, merging='recompute',
           pieces=2)
    frozen = {id(p) for p in model.patch_embed.parameters()}
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    out_f, grads_f = step(model, x.requires_grad_(False))
    assert torch.allclose(out_a, out_f, rtol=1e-13, atol=1e-13)
    kept = [(a, b) for p, a, b in zip(model.parameters(), grads_a[1:],
                                      grads_f[1:]) if id(p) not in frozen]
    assert all(b is None for p, b in zip(model.parameters(), grads_f[1:])
               if id(p) in frozen)
    assert max_rel(*zip(*kept)) <= TOL
    unwire(model)
    assert all(p.requires_grad for p in model.patch_embed.parameters())


def test_hook_probe_reports_bytes_kept_per_non_reversible_layer():
    torch.manual_seed(0)
    model = tiny_swin()
    model.train()
    x = torch.randn(1, 3, 12, 40, 40)
    results = {}
    for merging in ('keep', 'checkpoint', 'recompute'):
        rewire(model, 'reversible', merging=merging)
        probes = {name: KeptBytesProbe(m, policy) for name, m, policy
                  in non_reversible_layers(model)}
        model(x).sum().backward()
        results[merging] = {n: (p.policy, p.kept_bytes)
                            for n, p in probes.items()}
        for p in probes.values():
            p.remove()
    stage_out = 1 * 6 * 10 * 10 * 16 * 4  # float32 stage-0 output
    assert results['keep']['patch_embed'][1] >= x.numel() * 4
    policy, kept = results['keep']['layers.0.downsample']
    assert policy == 'kept' and kept >= 2 * stage_out  # LN and Linear inputs
    assert results['checkpoint']['layers.0.downsample'] == ('checkpoint',
                                                            stage_out)
    assert results['recompute']['layers.0.downsample'] == ('recompute', 0)


def test_engine_split_and_tail_gradcheck():
    """A toy local chain (1-D convolutions, halo 1) with a pooled tail."""
    torch.manual_seed(0)
    convs = [nn.Conv1d(2, 2, 3, padding=1).double() for _ in range(3)]
    pool = nn.Conv1d(2, 3, 2, stride=2).double()

    def split(conv, x):
        T = x.shape[2]
        pieces = []
        for t0, t1 in split_range(T, 3):
            a, b = max(t0 - 1, 0), min(t1 + 1, T)
            pieces.append(Piece(
                (slice(None), slice(None), slice(a, b)),
                (slice(None), slice(None), slice(t0, t1)),
                lambda p, c=conv, s=t0 - a, n=t1 - t0:
                torch.tanh(c(p)).narrow(2, s, n)))
        return pieces

    fns = [ResidualFunction(lambda t, c=c: torch.tanh(c(t)), [c],
                            lambda t, c=c: split(c, t)) for c in convs]
    tail = ResidualFunction(pool, [pool], lambda t: [
        Piece((slice(None), slice(None), slice(a, b)),
              (slice(None), slice(None), slice(a // 2, b // 2)), pool)
        for a, b in split_range(t.shape[2], 2, unit=2)])
    x = torch.randn(2, 2, 8, dtype=torch.float64, requires_grad=True)
    params = [p for m in convs + [pool] for p in m.parameters()]
    assert torch.allclose(reversible_chain(fns, x, tail),
                          pool(rewired_loop(fns, x)), rtol=1e-13)
    assert torch.autograd.gradcheck(
        lambda x, *ps: reversible_chain(fns, x, tail), (x, *params))


def test_num_pieces_and_split_range():
    x = torch.zeros(4, 256)  # 4 KiB
    assert num_pieces(x, 1) == 1
    assert num_pieces(x, 2, piece_bytes=1024) == 4
    assert split_range(10, 3, unit=4) == [(0, 4), (4, 8), (8, 10)]
    assert split_range(3, 8) == [(0, 1), (1, 2), (2, 3)]

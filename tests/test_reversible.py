"""Reversible engine: exact gradients, inversion, RNG and autocast replay."""
import copy

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.reversible import (ResidualFunction, reconstruction_error,
                                  reversible_chain, rewired_loop)
from re2tal_mm.rewiring import (is_rewired, rewire, rewired_stages,
                                rewiring_summary, unwire)
from re2tal_mm.rewiring.swin import LazyMask
from re2tal_mm.rewiring.swin import layer_functions as block_functions

from mmaction.models.backbones import ResNet3dSlowFast, SwinTransformer3D

torch.set_num_threads(1)


def small_swin(drop_path_rate=0.0):
    return SwinTransformer3D(
        arch=dict(embed_dims=24, depths=(2, 2, 2, 2), num_heads=(1, 1, 1, 1)),
        window_size=(2, 4, 4), pretrained=None, pretrained2d=False,
        drop_path_rate=drop_path_rate)


SMALL_SLOWFAST = dict(
    resample_rate=4, speed_ratio=4, channel_ratio=8,
    slow_pathway=dict(type='resnet3d', depth=50, pretrained=None,
                      lateral=True, base_channels=16, fusion_kernel=5,
                      conv1_kernel=(1, 7, 7), conv1_stride_t=1,
                      pool1_stride_t=1, inflate=(0, 0, 1, 1),
                      speed_ratio=4, channel_ratio=8),
    fast_pathway=dict(type='resnet3d', depth=50, pretrained=None,
                      lateral=False, base_channels=2,
                      conv1_kernel=(5, 7, 7), conv1_stride_t=1,
                      pool1_stride_t=1))


def small_slowfast():
    return ResNet3dSlowFast(**copy.deepcopy(SMALL_SLOWFAST))


def run_step(model, x, seed=1):
    """One forward/backward; returns output, input+param grads, RNG state."""
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    out = model(x)
    outs = out if isinstance(out, tuple) else (out, )
    sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum()
        for o in outs).backward()
    grads = [x.grad] + [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads, torch.get_rng_state()


def max_rel(a_list, b_list):
    return max(((a.double() - b.double()).norm() /
                a.double().norm().clamp_min(1e-30)).item()
               for a, b in zip(a_list, b_list))


def compare_modes(model, x, **options):
    rewire(model, 'autograd', **options)
    out_a, grads_a, rng_a = run_step(model, x)
    rewire(model, 'reversible', **options)
    out_r, grads_r, rng_r = run_step(model, x)
    return out_a, grads_a, rng_a, out_r, grads_r, rng_r


@pytest.mark.parametrize('factory,shape', [
    (small_swin, (1, 3, 4, 32, 32)),
    (small_slowfast, (2, 3, 8, 32, 32)),
])
def test_reversible_grads_equal_autograd_float64(factory, shape):
    torch.manual_seed(0)
    model = factory().double()
    model.train()
    x = torch.randn(*shape, dtype=torch.float64)
    out_a, grads_a, _, out_r, grads_r, _ = compare_modes(model, x)
    for a, r in zip(out_a, out_r):
        assert torch.equal(a, r)
    assert len(grads_a) == len(list(model.parameters())) + 1
    assert max_rel(grads_a, grads_r) <= 1e-10


def test_batchnorm_running_stats_updated_once():
    torch.manual_seed(0)
    model = small_slowfast().double()
    model.train()
    x = torch.randn(2, 3, 8, 32, 32, dtype=torch.float64)
    twin = copy.deepcopy(model)
    rewire(model, 'reversible')
    rewire(twin, 'autograd')
    run_step(model, x)
    run_step(twin, x)
    for (k, a), b in zip(model.state_dict().items(),
                         twin.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), k


def test_drop_path_rng_replay_and_global_rng_state():
    torch.manual_seed(0)
    model = small_swin(drop_path_rate=0.5).double()
    model.train()
    x = torch.randn(1, 3, 4, 32, 32, dtype=torch.float64)
    out_a, grads_a, rng_a, out_r, grads_r, rng_r = compare_modes(
        model, x, windows_per_call=3)
    assert torch.equal(out_a[0], out_r[0])
    assert max_rel(grads_a, grads_r) <= 1e-10
    assert torch.equal(rng_a, rng_r)
    # two steps draw different drop-path masks
    out2, _, _ = run_step(model, x, seed=2)
    assert not torch.allclose(out_r[0], out2[0])


def test_bf16_autocast_cpu_and_drift_monitor():
    torch.manual_seed(0)
    model = small_swin()
    model.train()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out_a, grads_a, _, out_r, grads_r, _ = compare_modes(model, x)
        stages = rewired_stages(model)
        for s in stages:
            s.probe = True
        model(x)
    assert torch.allclose(out_a[0].float(), out_r[0].float(), atol=2e-2,
                          rtol=2e-2)
    assert max_rel(grads_a, grads_r) <= 5e-2
    errors = [s.last_error for s in stages]
    assert all(e is not None and 0 <= e < 1e-1 for e in errors)


def test_no_grad_runs_plain_loop(monkeypatch):
    from re2tal_mm.reversible import function
    calls = []
    monkeypatch.setattr(function.ReversibleChainFunction, 'apply',
                        lambda *a: calls.append(a))
    model = rewire(small_swin(), 'reversible')
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 4, 32, 32))
    for p in model.parameters():
        p.requires_grad_(False)
    model(torch.randn(1, 3, 4, 32, 32))
    assert calls == []


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
def test_reconstruction_full_size_swin_t_stage(dtype, tol):
    torch.manual_seed(0)
    model = SwinTransformer3D(arch='tiny', pretrained=None,
                              pretrained2d=False).to(dtype)
    model.train()
    layer = model.layers[2]  # 6 blocks, 384 channels, 12 functions
    x = torch.randn(1, 4, 14, 14, 384, dtype=dtype)
    from mmaction.models.backbones.swin import get_window_size
    ws, ss = get_window_size((4, 14, 14), layer.window_size, layer.shift_size)
    mask = LazyMask(4, 14, 14, ws, ss, x.device)
    err = reconstruction_error(block_functions(layer, mask, dict(pieces=1)),
                               x)
    assert err <= tol


def test_chain_function_matches_loop_on_toy_functions():
    torch.manual_seed(0)
    lins = [torch.nn.Linear(5, 5).double() for _ in range(3)]
    fns = [ResidualFunction(lambda t, m=m: torch.tanh(m(t)), [m])
           for m in lins]
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    params = [p for m in lins for p in m.parameters()]
    assert torch.autograd.gradcheck(
        lambda x, *ps: reversible_chain(fns, x), (x, *params))
    assert torch.allclose(reversible_chain(fns, x), rewired_loop(fns, x))


def test_state_dict_identity_checkpoint_load_and_unwire():
    torch.manual_seed(0)
    model = small_swin()
    model.eval()
    reference = copy.deepcopy(model)
    x = torch.randn(1, 3, 4, 32, 32)
    before = model.state_dict()
    params_before = list(model.parameters())
    rewire(model)
    assert is_rewired(model) and not is_rewired(reference)
    after = model.state_dict()
    assert list(before) == list(after)
    assert all(before[k] is after[k] or torch.equal(before[k], after[k])
               for k in before)
    assert all(a is b for a, b in zip(params_before, model.parameters()))
    result = model.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(rewiring_summary(model)) == 4
    unwire(model)
    assert not is_rewired(model)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_windows_per_call_is_the_same_attention():
    torch.manual_seed(0)
    model = small_swin().double()
    model.eval()
    x = torch.randn(1, 3, 4, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        whole = rewire(model, 'autograd', windows_per_call=0)(x)
        sliced = rewire(model, 'autograd', windows_per_call=3)(x)
    assert torch.allclose(whole, sliced, rtol=1e-12, atol=1e-14)
    with pytest.raises(TypeError, match='windows_per_calls'):
        rewire(model, windows_per_calls=2)
    with pytest.raises(TypeError, match="'chunks' is now called 'pieces'"):
        rewire(model, chunks=2)


def test_unsupported_module_raises_type_error():
    with pytest.raises(TypeError, match='SwinTransformer3D'):
        rewire(torch.nn.Linear(2, 2))

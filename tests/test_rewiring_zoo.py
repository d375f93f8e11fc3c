"""Adapters of MMAction2's zoo: Swin, ViT (VideoMAE), MViT, X3D, 2D ResNet
(TSN) and ResNetTSM, on tiny float64 models."""
import copy
import inspect
import os.path as osp

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.reversible import function, relative_error
from re2tal_mm.rewiring import (find_backbones, mvit, resnet2d, resnet_tsm,
                                rewire, rewired_stages, rewiring_summary,
                                unwire, vit, x3d)

from mmaction.models.backbones import (X3D, MViT, ResNet, ResNet3d, ResNetTSM,
                                       SwinTransformer3D, VisionTransformer)

torch.set_num_threads(1)


def tiny_vit(**kwargs):
    return VisionTransformer(img_size=32, patch_size=16, embed_dims=16,
                             depth=3, num_heads=2, num_frames=4,
                             tubelet_size=2, **kwargs)


def tiny_mvit(**kwargs):
    arch = dict(embed_dims=8, num_layers=5, num_heads=1,
                downscale_indices=[2])
    return MViT(arch=arch, spatial_size=32, temporal_size=4,
                out_scales=[0, 1], **kwargs)


VIDEO = (2, 3, 4, 32, 32)
FRAMES = (4, 3, 32, 32)  # (N * T, C, H, W) with N = 2, T = 2
# name: (builder, input shape, expected (stage, reversible, blocks) rows)
CASES = {
    # window 2x4x4 on a 2x8x8 token grid, two stages with a PatchMerging
    'swin': (lambda: SwinTransformer3D(
        arch=dict(embed_dims=8, depths=(2, 2), num_heads=(2, 2)),
        window_size=(2, 4, 4), pretrained=None, pretrained2d=False,
        drop_path_rate=0.3, out_indices=(1, )), VIDEO,
             [('layers.0', 2, 2), ('layers.1', 2, 2)]),
    'vit': (lambda: tiny_vit(init_values=0.1, drop_path_rate=0.3), VIDEO,
            [('blocks', 3, 3)]),
    # 48 px input: the position embedding is resized
    'vit-feat-map': (lambda: tiny_vit(return_feat_map=True,
                                      use_mean_pooling=False,
                                      use_learnable_pos_emb=True),
                     (2, 3, 4, 48, 48), [('blocks', 3, 3)]),
    'mvit': (lambda: tiny_mvit(drop_path_rate=0.3), VIDEO,
             [('blocks[0:2]', 2, 2), ('blocks[3:5]', 2, 3)]),
    'mvit-no-cls-abs-pos': (
        lambda: tiny_mvit(with_cls_token=False, output_cls_token=False,
                          use_abs_pos_embed=True, rel_pos_embed=False),
        VIDEO, [('blocks[0:2]', 2, 2), ('blocks[3:5]', 2, 3)]),
    'mvit-dim-mul-in-mlp': (
        lambda: tiny_mvit(dim_mul_in_attention=False, residual_pooling=False),
        VIDEO, [('blocks[0:1]', 1, 2), ('blocks[3:5]', 2, 3)]),
    'x3d': (lambda: X3D(gamma_w=0.5, num_stages=2, spatial_strides=(2, 2),
                        se_style='all'), VIDEO,
            [('layer1', 0, 1), ('layer2', 1, 2)]),
    'resnet': (lambda: ResNet(50, pretrained=None, num_stages=2,
                              out_indices=(0, 1), strides=(1, 2),
                              dilations=(1, 1)), FRAMES,
               [('layer1', 2, 3), ('layer2', 3, 4)]),
    'tsm': (lambda: ResNetTSM(18, num_segments=2, shift_div=4,
                              pretrained=None, temporal_pool=True), FRAMES,
            [('layer1', 1, 2), ('layer2.net', 1, 2), ('layer3', 1, 2),
             ('layer4', 1, 2)]),
}


def build(name, seed=0):
    torch.manual_seed(seed)
    builder, shape, _ = CASES[name]
    model = builder().double()
    model.train()
    return model, torch.randn(shape, dtype=torch.float64)


def flat(out):
    """Every tensor of a (nested) backbone output."""
    if torch.is_tensor(out):
        return [out]
    return [t for o in out for t in flat(o)]


def train_step(model, x, seed=1):
    """One forward/backward with a fixed random readout; returns grads."""
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)  # the same drop-path masks for every model
    outs = flat(model(x))
    gen = torch.Generator().manual_seed(2)
    loss = sum((o * torch.randn(o.shape, generator=gen,
                                dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()
             if p.requires_grad}
    return x.grad, grads


def bn_buffers(model):
    return {n: b.clone() for n, b in model.named_buffers()
            if 'running' in n or 'num_batches' in n}


@pytest.mark.parametrize('name', list(CASES))
def test_reversible_grads_equal_autograd(name):
    ref, x = build(name)
    rev = copy.deepcopy(ref)
    rewire(ref, 'autograd')
    rewire(rev, 'reversible')
    gx_ref, g_ref = train_step(ref, x)
    gx_rev, g_rev = train_step(rev, x)
    # errors relative to each tensor's norm: single elements may cancel
    assert relative_error(gx_rev, gx_ref) < 1e-10
    assert g_ref.keys() == g_rev.keys()
    assert all(g is not None for g in g_rev.values())
    # gradients that vanish mathematically (e.g. the key-norm bias of
    # attention: softmax is shift invariant) are compared on a global scale
    floor = 1e-6 * max(g.norm() for g in g_ref.values())
    errors = {n: ((g_rev[n] - g_ref[n]).norm() /
                  max(g_ref[n].norm(), floor)).item() for n in g_ref}
    assert max(errors.values()) < 1e-10, max(errors.items(),
                                             key=lambda e: e[1])
    # BatchNorm running statistics: updated once per step, as in autograd
    b_ref, b_rev = bn_buffers(ref), bn_buffers(rev)
    assert b_ref.keys() == b_rev.keys()
    for n in b_ref:
        torch.testing.assert_close(b_rev[n], b_ref[n], rtol=1e-12, atol=0)
        if n.endswith('num_batches_tracked'):
            assert b_rev[n].item() == 1, n


def test_drop_path_makes_steps_differ():
    """Drop path is active (so the equality above is a real replay test)."""
    model, x = build('vit')
    rewire(model, 'reversible')
    a, _ = train_step(model, x, seed=1)
    model.zero_grad()
    b, _ = train_step(model, x, seed=3)
    assert not torch.allclose(a, b)


def test_vit_sdpa_is_the_upstream_attention():
    """``attention='sdpa'`` (whole and in head groups) against the
    block's own ``Attention`` in float64, both modes, drop path on."""
    model, x = build('vit')
    rewire(model, 'autograd')
    gx_u, grads_u = train_step(model, x)
    for options in (dict(attention='sdpa'),
                    dict(attention='sdpa', pieces=3)):
        for mode in ('autograd', 'reversible'):
            model.zero_grad(set_to_none=True)
            rewire(model, mode, **options)
            gx, grads = train_step(model, x)
            assert relative_error(gx, gx_u) < 1e-10, (mode, options)
            assert max(relative_error(grads[n], grads_u[n])
                       for n in grads_u) < 1e-10, (mode, options)
    with pytest.raises(TypeError, match="'head_chunk' was removed"):
        rewire(model, head_chunk=2)


@pytest.mark.parametrize('name', list(CASES))
def test_reconstruction_and_summary(name):
    model, x = build(name)
    rewire(model)
    for stage in rewired_stages(model):
        stage.probe = True
    with torch.no_grad():
        model(x)
    errors = [s.last_error for s in rewired_stages(model)]
    assert errors and max(errors) < 1e-12
    rows = [(r['stage'], r['reversible_blocks'], r['blocks'])
            for r in rewiring_summary(model)]
    assert rows == CASES[name][2]


@pytest.mark.parametrize('name', list(CASES))
def test_state_dict_identity_and_unwire(name):
    model, x = build(name)
    model.eval()
    before = model.state_dict(keep_vars=True)
    with torch.no_grad():
        ref = flat(model(x))
        rewire(model)
        after = model.state_dict(keep_vars=True)
        assert list(after) == list(before)
        assert all(after[k] is before[k] for k in before)
        rewired = flat(model(x))
        assert [o.shape for o in rewired] == [o.shape for o in ref]
        unwire(model)
        assert all(torch.equal(a, b) for a, b in zip(flat(model(x)), ref))
    assert all('forward' not in m.__dict__ for m in model.modules())


def zero_branches(model):
    """Zero the last layer of every residual branch (Linear of attention /
    MLP; last BatchNorm of a conv block)."""
    from mmaction.models.backbones.resnet import BasicBlock, Bottleneck
    from mmaction.models.backbones.x3d import BlockX3D
    if hasattr(model, 'layers') and hasattr(model.layers[0], 'blocks'):
        parts = [p for layer in model.layers for blk in layer.blocks
                 for p in (blk.attn, blk.mlp)]  # Swin
        kind = torch.nn.Linear
    elif hasattr(model, 'blocks'):
        parts = [p for blk in model.blocks for p in (blk.attn, blk.mlp)]
        kind = torch.nn.Linear
    else:
        parts = [m for m in model.modules()
                 if isinstance(m, (BasicBlock, Bottleneck, BlockX3D))]
        kind = _BatchNorm
    with torch.no_grad():
        for part in parts:
            last = [m for m in part.modules() if isinstance(m, kind)][-1]
            last.weight.zero_()
            last.bias.zero_()


@pytest.mark.parametrize('name', list(CASES))
def test_forward_matches_original_with_zero_branches(name):
    """With every residual function zero the rewired chain is the identity,
    as the original one is (stage inputs are post-ReLU): checks the rest of
    each replaced forward (embeddings, cls token, pooling, outputs)."""
    model, x = build(name)
    model.eval()
    zero_branches(model)
    with torch.no_grad():
        ref = flat(model(x))
        rewire(model)
        for out, expected in zip(flat(model(x)), ref):
            torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)


def test_most_specific_adapter_wins():
    tsm = ResNetTSM(18, num_segments=2, pretrained=None)
    res = ResNet(18, pretrained=None, num_stages=1, out_indices=(0, ),
                 strides=(1, ), dilations=(1, ))
    r3d = ResNet3d(18, pretrained=None, pretrained2d=False, num_stages=1,
                   out_indices=(0, ), spatial_strides=(1, ),
                   temporal_strides=(1, ), dilations=(1, ))
    adapters = [find_backbones(m)[0][2].__name__ for m in (tsm, res, r3d)]
    assert adapters == ['ResNetTSMAdapter', 'ResNet2dAdapter',
                        'ResNet3dAdapter']


def test_tsm_block_shift_stays_plain():
    """``shift_place='block'`` shifts the shortcut too: no identity chain."""
    model = ResNetTSM(18, num_segments=2, pretrained=None,
                      shift_place='block')
    rewire(model)
    assert all(r['reversible_blocks'] == 0 for r in rewiring_summary(model))


def scaled(method):
    """``method`` with its (first) output times 1.5."""

    def patched(*args, **kwargs):
        out = method(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] * 1.5, *out[1:])
        return out * 1.5
    return patched


def upstream(path: str):
    """``(class, method name)`` from ``'module:Class.method'``."""
    module, attr = path.split(':')
    cls, name = attr.split('.')
    return getattr(__import__(module, fromlist=[cls]), cls), name


# the upstream code each adapter's functions run, by default options
UPSTREAM = [
    ('swin', 'mmaction.models.backbones.swin:'
     'SwinTransformerBlock3D.forward_part1'),
    ('swin', 'mmaction.models.backbones.swin:'
     'SwinTransformerBlock3D.forward_part2'),
    ('swin', 'mmaction.models.backbones.swin:WindowAttention3D.forward'),
    ('vit', 'mmaction.models.backbones.vit_mae:Attention.forward'),
    ('vit', 'mmcv.cnn.bricks.transformer:FFN.forward'),
    ('mvit', 'mmaction.models.backbones.mvit:MultiScaleAttention.forward'),
    ('mvit', 'mmaction.models.backbones.mvit:MultiScaleBlock.forward'),
    ('x3d', 'mmaction.models.backbones.x3d:SEModule.forward'),
    ('resnet', 'mmcv.cnn:ConvModule.forward'),
    ('tsm', 'mmaction.models.backbones.resnet_tsm:TemporalShift.forward'),
]


@pytest.mark.parametrize('name,path', UPSTREAM)
def test_rewired_output_runs_the_upstream_method(name, path, monkeypatch):
    """A change of MMAction2's (or mmcv's) block code reaches the rewired
    model: patched at class level, the output moves, in both modes."""
    model, x = build(name)
    model.eval()
    cls, method = upstream(path)
    for mode in ('autograd', 'reversible'):
        rewire(model, mode)
        with torch.no_grad():
            before = flat(model(x))
            with monkeypatch.context() as m:
                m.setattr(cls, method, scaled(getattr(cls, method)))
                after = flat(model(x))
        assert any(not torch.allclose(a, b) for a, b in zip(after, before))


FLOOR_CASES = {
    'swin': CASES['swin'][0],
    'vit': CASES['vit'][0],
    'mvit': CASES['mvit'][0],
    'x3d': lambda: X3D(gamma_w=0.5, num_stages=2, spatial_strides=(2, 2),
                       gamma_d=2, se_style='half',
                       norm_eval=True),
    'resnet': lambda: ResNet(50, pretrained=None, num_stages=2,
                             out_indices=(0, 1), strides=(1, 2),
                             dilations=(1, 1), norm_eval=True),
    'tsm': lambda: ResNetTSM(18, num_segments=2, shift_div=4,
                             pretrained=None, norm_eval=True),
}


@pytest.mark.parametrize('name', list(FLOOR_CASES))
def test_memory_floor_is_exact_and_computes_in_pieces(name, monkeypatch):
    """``memory='floor'``: the gradients of ``'autograd'`` to 1e-10 in
    float64 (drop path on where the case has it), and some residual
    function is really computed in several pieces."""
    torch.manual_seed(0)
    ref = FLOOR_CASES[name]().double()
    ref.train()
    x = torch.randn(CASES[name][1], dtype=torch.float64)
    floor = copy.deepcopy(ref)
    rewire(ref, 'autograd')
    rewire(floor, 'reversible', memory='floor', pieces=3)
    counts, pieces_of = [], function.pieces_of

    def counted(f, t):  # split once: it may draw a drop-path mask
        pieces = pieces_of(f, t)
        counts.append(len(pieces))
        return pieces
    monkeypatch.setattr(function, 'pieces_of', counted)
    gx_ref, g_ref = train_step(ref, x)
    gx, g = train_step(floor, x)
    assert max(counts) >= 3
    assert relative_error(gx, gx_ref) < 1e-10
    scale = max(t.norm() for t in g_ref.values())
    assert max((g[n] - g_ref[n]).norm() / max(g_ref[n].norm(), 1e-6 * scale)
               for n in g_ref) < 1e-10
    # unwire undoes what the preset's ``prepare`` patched, generically
    unwire(floor)
    assert all('forward' not in m.__dict__ for m in floor.modules())
    assert all(p.requires_grad for p in floor.parameters())


def test_memory_presets_choose_options():
    model, _ = build('swin')
    rewire(model, memory='floor')
    options = rewired_stages(model)[0].options
    assert options['pieces'] == 8 and options['merging'] == 'recompute'
    rewire(model, memory='floor', merging='checkpoint')  # given wins
    assert rewired_stages(model)[0].options['merging'] == 'checkpoint'
    rewire(model, memory='fast')
    assert rewired_stages(model)[0].options['windows_per_call'] == 0
    with pytest.raises(ValueError, match='memory must be one of'):
        rewire(model, memory='least')


def test_adapter_modules_are_small():
    for module in (vit, mvit, x3d, resnet2d, resnet_tsm):
        path = inspect.getsourcefile(module)
        with open(path) as f:
            assert len(f.readlines()) < 150, osp.basename(path)


def test_bn_backbones_have_batchnorm():
    """The BN running-stats check above covers these three backbones."""
    for name in ('x3d', 'resnet', 'tsm'):
        model, _ = build(name)
        assert any(isinstance(m, _BatchNorm) for m in model.modules())


def test_rewire_whole_recognizers():
    """``rewire`` finds the new backbones inside recognizers (TSM, ViT)."""
    from mmengine.registry import init_default_scope

    from mmaction.registry import MODELS
    init_default_scope('mmaction')
    tsm = MODELS.build(dict(
        type='Recognizer2D',
        backbone=dict(type='ResNetTSM', depth=18, num_segments=2,
                      shift_div=4, pretrained=None),
        cls_head=dict(type='TSMHead', num_classes=3, in_channels=512,
                      num_segments=2)))
    vit_rec = MODELS.build(dict(
        type='Recognizer3D',
        backbone=dict(type='VisionTransformer', img_size=32, patch_size=16,
                      embed_dims=16, depth=2, num_heads=2, num_frames=4),
        cls_head=dict(type='TimeSformerHead', num_classes=3,
                      in_channels=16)))
    inputs = (torch.randn(1, 2, 3, 32, 32), torch.randn(1, 1, 3, 4, 32, 32))
    for model, x in zip((tsm, vit_rec), inputs):
        model.train()
        rewire(model)
        model(x, mode='tensor').sum().backward()
        assert all(r['stage'].startswith('backbone.')
                   for r in rewiring_summary(model))
        assert all(p.grad is not None for p in model.backbone.parameters())

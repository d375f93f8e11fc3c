"""Temporal adapters (AdaTAD) in VideoMAE ViTs, plain and rewired: tiny
float64 models, a window of 2 clips."""
import copy

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.models.temporal_adapter import (ClipBatchedViT, ClipGrid,
                                               TemporalAdapter,
                                               insert_temporal_adapters,
                                               set_temporal_context,
                                               temporal_adapters)
from re2tal_mm.reversible import relative_error
from re2tal_mm.rewiring import rewire, unwire

from mmaction.models.backbones import VisionTransformer

pytestmark = pytest.mark.usefixtures('one_thread')

WINDOW = (2, 3, 8, 32, 32)  # 2 windows of 2 clips of 4 frames


def tiny(adapters=True, seed=0, **kwargs):
    torch.manual_seed(seed)
    kw = dict(img_size=32, patch_size=16, embed_dims=16, depth=3,
              num_heads=2, num_frames=4, tubelet_size=2,
              use_mean_pooling=False)
    kw.update(kwargs)
    model = ClipBatchedViT(
        temporal_adapter=dict(reduction=2) if adapters else None, **kw)
    return model.double().train()


def randomize_up(model, seed=3):
    """Non-zero up-projections (a trained state), so every temporal
    adapter parameter gets a gradient."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in temporal_adapters(model):
            for p in (m.up_proj.weight, m.up_proj.bias):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen,
                                          dtype=p.dtype))


def step(model, x, seed=1):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)  # the same drop-path masks for every model
    out = model(x)
    gen = torch.Generator().manual_seed(2)
    (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() \
        .backward()
    return out.detach(), x.grad, {n: p.grad for n, p in
                                  model.named_parameters() if p.requires_grad}


def window(seed=5):
    return torch.randn(WINDOW, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_insert_freezes_and_keeps_keys():
    plain = VisionTransformer(img_size=32, patch_size=16, embed_dims=16,
                              depth=3, num_heads=2, num_frames=4)
    keys = set(plain.state_dict())
    new = insert_temporal_adapters(plain, blocks=[0, -1], reduction=2)
    assert all(n.startswith(('blocks.0.temporal_adapter.',
                             'blocks.2.temporal_adapter.')) for n in new)
    assert {n for n, p in plain.named_parameters() if p.requires_grad} \
        == set(new)
    assert set(plain.state_dict()) == keys | set(new)
    with pytest.raises(ValueError, match='already has'):
        insert_temporal_adapters(plain, blocks=[0])
    # a Kinetics checkpoint of the plain ViT loads; only adapters missing
    model = tiny()
    missing, unexpected = model.load_state_dict(
        VisionTransformer(img_size=32, patch_size=16, embed_dims=16,
                          depth=3, num_heads=2, num_frames=4,
                          use_mean_pooling=False).double().state_dict(),
        strict=False)
    assert not unexpected
    assert missing and all('.temporal_adapter.' in k for k in missing)
    # the ViT's init_cfg (TruncNormal on every Linear) keeps them at zero
    model.init_weights()
    for m in temporal_adapters(model):
        assert not m.up_proj.weight.any() and not m.up_proj.bias.any()


def test_zero_adapters_leave_the_backbone_bit_identical():
    x = window()
    for kw in (dict(), dict(attention='sdpa'), dict(with_cp=True)):
        ref, ada = tiny(False, drop_path_rate=0.3, **kw), \
            tiny(True, drop_path_rate=0.3, **kw)
        ada.load_state_dict(ref.state_dict(), strict=False)
        out_ref, gx_ref, _ = step(ref, x)
        out_ada, gx_ada, _ = step(ada, x)
        assert torch.equal(out_ref, out_ada), kw
        assert torch.equal(gx_ref, gx_ada), kw


@pytest.mark.parametrize('mode', ['reversible', 'autograd'])
def test_zero_adapters_leave_the_rewired_backbone_bit_identical(mode):
    """Rewired, the same: the chain with zero temporal adapters (each
    followed by the function that keeps the streams' roles) is the chain
    without them, drop path on, piecewise or whole."""
    x = window()
    for options in (dict(), dict(memory='floor')):
        ref = tiny(False, drop_path_rate=0.3, init_values=0.1)
        ada = tiny(True, drop_path_rate=0.3, init_values=0.1)
        ada.load_state_dict(ref.state_dict(), strict=False)
        rewire(ref, mode, **options)
        rewire(ada, mode, **options)
        out_ref, gx_ref, _ = step(ref, x)
        out_ada, gx_ada, _ = step(ada, x)
        assert torch.equal(out_ref, out_ada), options
        assert torch.equal(gx_ref, gx_ada), options


def test_clips_batched_and_temporal_conv_across_clips():
    x = window()
    model = tiny(False).eval()
    with torch.no_grad():
        out = model(x)
        one = [VisionTransformer.forward(model, c) for c in x.split(4, 2)]
    assert out.shape == (2, 16, 4, 2, 2)
    assert torch.allclose(out, torch.cat(one, 2), atol=1e-12)
    # a temporal adapter mixes neighbouring clips of a window, never windows
    model = tiny(True).eval()
    randomize_up(model)
    y = x.clone()
    y[:, :, 4:] += 1  # the second clip of each window
    z = x.clone()
    z[1] += 1  # the second window
    with torch.no_grad():
        a, b, c = model(x), model(y), model(z)
    assert not torch.allclose(a[:, :, :2], b[:, :, :2])
    assert torch.equal(a[0], c[0])


def test_no_grid_is_refused():
    adapter = TemporalAdapter(16).double()
    with pytest.raises(RuntimeError, match='ClipGrid'):
        adapter(torch.zeros(2, 4, 16, dtype=torch.float64))
    plain = VisionTransformer(img_size=32, patch_size=16, embed_dims=16,
                              depth=1, num_heads=2, num_frames=4).double()
    insert_temporal_adapters(plain)
    keys = set(plain.state_dict())
    set_temporal_context(plain, ClipGrid(1, 2, 2, 2))  # one clip each
    adapter = temporal_adapters(plain)[0]
    assert adapter.clip_grid == ClipGrid(1, 2, 2, 2)
    assert set(plain.state_dict()) == keys  # the grid is not state
    assert 'clip_grid=' in repr(adapter)
    assert plain(window()[:, :, :4]).shape == (2, 16)


@pytest.mark.parametrize('options', [
    dict(), dict(attention='sdpa'),
    dict(memory='floor'), dict(attention='sdpa', pieces=2)])
def test_reversible_adapter_grads_equal_autograd(options):
    ref = tiny(drop_path_rate=0.3, init_values=0.1)
    randomize_up(ref)
    rev = copy.deepcopy(ref)
    rewire(ref, 'autograd', **options)
    rewire(rev, 'reversible', **options)
    x = window()
    out_ref, gx_ref, g_ref = step(ref, x)
    out_rev, gx_rev, g_rev = step(rev, x)
    assert relative_error(out_rev, out_ref) < 1e-12
    assert relative_error(gx_rev, gx_ref) < 1e-10
    assert g_ref.keys() == g_rev.keys()
    assert g_ref and all('.temporal_adapter.' in n for n in g_ref)
    for n in g_ref:
        assert relative_error(g_rev[n], g_ref[n]) < 1e-10, n
    # frozen backbone parameters get no gradient at all
    for model in (ref, rev):
        for n, p in model.named_parameters():
            if '.temporal_adapter.' not in n:
                assert p.grad is None, n


def test_rewired_chain_has_the_adapter_functions():
    from re2tal_mm.rewiring.vit import chain_functions as block_functions
    model = tiny()
    fns = block_functions(list(model.blocks), dict(attention='upstream',
                                                   pieces=1))
    # attention, MLP, temporal adapter, the stream keeper (adds nothing)
    assert len(fns) == 4 * 3
    assert [f.modules[0] for f in fns[2::4]] == temporal_adapters(model)
    assert all(not f.modules for f in fns[3::4])
    # unwired: the plain blocks with their temporal adapters again
    rewire(model, 'reversible')
    unwire(model)
    randomize_up(model)
    ref = copy.deepcopy(model)
    x = window()
    assert torch.equal(step(model, x)[0], step(ref, x)[0])


def test_checkpointed_baseline_equals_plain():
    """AdaTAD's baseline: frozen backbone, temporal adapters, checkpointed
    blocks; the same gradients as without checkpointing."""
    ref = tiny(drop_path_rate=0.3)
    randomize_up(ref)
    cp = copy.deepcopy(ref)
    for blk in cp.blocks:
        blk.with_cp = True
    x = window()
    _, gx_ref, g_ref = step(ref, x)
    _, gx_cp, g_cp = step(cp, x)
    assert relative_error(gx_cp, gx_ref) < 1e-12
    for n in g_ref:
        assert relative_error(g_cp[n], g_ref[n]) < 1e-12, n


def test_temporal_adapter_pieces_equal_the_whole():
    """Split (rows of the token grid, every time step) as the reversible
    engine computes it: the pieces add up to the whole branch."""
    from re2tal_mm.reversible.pieces import add_at_, take
    from re2tal_mm.rewiring.temporal_adapter import temporal_adapter_functions
    model = tiny()
    randomize_up(model)
    set_temporal_context(model, ClipGrid(2, 2, 2, 2))
    f, keep = temporal_adapter_functions(model.blocks[0], dict(pieces=2))
    assert keep.fn(torch.ones(3)).shape == () and not keep.fn(torch.ones(3))
    x = torch.randn(4, 8, 16, dtype=torch.float64)
    whole = f.fn(x)
    out = torch.zeros_like(whole)
    pieces = f.split(x)
    assert len(pieces) == 2
    for p in pieces:
        add_at_(out, p.write, p.fn(take(x, p.read)))
    assert torch.allclose(out, whole, rtol=0, atol=1e-14)


def test_rewiring_keeps_what_trains():
    """Freezing happens at construction: rewiring (what the hook and the
    DDP wrapper do later) leaves requires_grad as it is, so the hook's DDP
    refusal (on the parameters the rewiring report lists as frozen) is not
    triggered."""
    from re2tal_mm.rewiring import rewiring_report
    from re2tal_mm.rewiring.rewire import trainable_names
    model = tiny()
    before = trainable_names(model)
    for mode, memory in (('reversible', 'floor'), ('autograd', 'fast')):
        rewire(model, mode, memory=memory)
        assert trainable_names(model) == before
        assert rewiring_report(model).frozen == ()
    unwire(model)
    assert trainable_names(model) == before
    assert before and all('.temporal_adapter.' in n for n in before)


def test_localizer_loads_a_plain_checkpoint_adapters_reported_new():
    """``load_from`` a plain VideoMAE checkpoint: every original tensor is
    found, the temporal adapters are said to be new (no warning)."""
    import logging
    import os.path as osp

    from mmengine.config import Config
    from mmengine.logging import MMLogger

    from mmaction.registry import MODELS
    demo = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'configs', 're2tal',
                    're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
    cfg = Config.fromfile(demo).model
    cfg.backbone = dict(type='ClipBatchedViT', img_size=32, patch_size=16,
                        embed_dims=16, depth=2, num_heads=2, num_frames=4,
                        use_mean_pooling=False,
                        temporal_adapter=dict(reduction=2))
    cfg.neck.in_channels = 16
    cfg.rewire = dict(mode='reversible', attention='sdpa')
    model = MODELS.build(cfg)
    plain = VisionTransformer(img_size=32, patch_size=16, embed_dims=16,
                              depth=2, num_heads=2, num_frames=4,
                              use_mean_pooling=False)
    state = {f'backbone.{k}': v for k, v in plain.state_dict().items()}
    logger = MMLogger.get_current_instance()
    records, handler = [], logging.Handler()
    handler.emit = records.append
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        model.load_state_dict(state, strict=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [r.getMessage() for r in records]
    assert any('temporal adapter tensors are new' in m for m in messages)
    assert not any('missing from the checkpoint' in m for m in messages)
    for k, v in plain.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_rewiring_summary_counts_the_temporal_adapter_functions():
    """Two functions per block, two more per temporal adapter (its branch
    and the stream-keeping step); every block reversible either way."""
    from re2tal_mm.rewiring import rewiring_summary
    for adapters, functions in ((True, 12), (False, 6)):
        model = rewire(tiny(adapters))
        [row] = rewiring_summary(model)
        assert (row['functions'], row['reversible_blocks'],
                row['blocks']) == (functions, 3, 3)

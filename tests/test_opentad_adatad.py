"""OpenTAD's AdaTAD backbone (``VisionTransformerAdapter``) against ours:
the ``adatad_vit.pth`` fixture (OpenTAD's own outputs, float64), the
temporal adapter's initialisation, rewired forms."""
import copy

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.apis.opentad import adatad
from re2tal_mm.apis.opentad.keys import UnplacedTensorError
from re2tal_mm.models.temporal_adapter import (ClipGrid, TemporalAdapter,
                                               temporal_adapters)
from re2tal_mm.reversible import relative_error
from re2tal_mm.rewiring import rewire

from mmaction.registry import MODELS
from .conftest import opentad_fixture

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def fixture():
    """``adatad_vit.pth`` (skipped when absent, failed in CI)."""
    return opentad_fixture('adatad_vit.pth')


def backbone(fixture):
    """Our backbone with the fixture's weights (trained-like adapters)."""
    cfg = adatad.model_cfg(fixture['constructor'])['backbone']
    model = MODELS.build(cfg).double()
    ours, dropped = adatad.convert_state_dict(fixture['state_dict'])
    model.load_state_dict(ours, strict=True)
    return model


def step(model, x, seed=1):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)  # the same drop-path masks for every model
    out = model(x)
    gen = torch.Generator().manual_seed(2)
    (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() \
        .backward()
    return out.detach(), x.grad, {n: p.grad for n, p in
                                  model.named_parameters() if p.requires_grad}


def test_fixture_outputs_equal_ours(fixture):
    assert adatad.matches(fixture)
    ours = adatad.run_fixture(fixture)
    assert set(ours) == {'output_chunks', 'output_window', 'output_pooled'}
    for key, value in ours.items():
        assert value.dtype == torch.float64
        assert value.shape == fixture[key].shape, key
        diff = (value - fixture[key]).abs().max().item()
        assert diff <= 1e-10, (key, diff)


def test_every_tensor_maps(fixture):
    state = fixture['state_dict']
    assert adatad.owns_keys(state) and adatad.ROLE == 'backbone'
    assert not adatad.owns_keys({'layers.0.blocks.0.attn.qkv.weight': 0})
    ours, dropped = adatad.convert_state_dict(state)
    assert not dropped and len(ours) == len(state) == 49
    assert 'blocks.1.temporal_adapter.gamma' in ours
    assert ours['blocks.0.temporal_adapter.dwconv.weight'] is \
        state['blocks.0.adapter.dwconv.weight']
    with pytest.raises(UnplacedTensorError, match='blocks.0.adapter.extra'):
        adatad.convert_state_dict({'blocks.0.adapter.extra': torch.zeros(1)})


def test_model_cfg(fixture):
    cfg = adatad.model_cfg(fixture['constructor'])
    assert cfg['rewire'] is None and cfg['feat_len'] == 12
    bb = cfg['backbone']
    assert bb['type'] == 'ClipBatchedViT' and bb['adapter_blocks'] == [0, 1]
    assert bb['temporal_adapter'] == dict(hidden_dims=8, kernel_size=3)
    assert bb['use_mean_pooling'] and bb['norm_cfg']['eps'] == 1e-6
    # OpenTAD's defaults: adapters in blocks 3, 5, 7, 11 of ViT-B
    default = adatad.model_cfg(dict(cls='VisionTransformerAdapter',
                                    return_feat_map=True))
    assert default['backbone']['adapter_blocks'] == [3, 5, 7, 11]
    assert default['feat_len'] == 768
    base = dict(fixture['constructor'])
    for bad, match in ((dict(frames=3), 'not known'),
                       (dict(attn_drop_rate=0.1), 'attn_drop_rate'),
                       (dict(qk_scale=0.5), 'qk_scale'),
                       (dict(return_feat_map=False), 'return_feat_map')):
        with pytest.raises(ValueError, match=match):
            adatad.model_cfg(dict(base, **bad))


def test_zero_up_projection_leaves_the_backbone_unchanged(fixture):
    """At AdaTAD's initialisation (zero up-projection) the fixture's
    adapters leave the ViT's function bit-identical; trained, they change
    it."""
    x = fixture['input']
    model = backbone(fixture).eval()
    plain_cfg = adatad.model_cfg(fixture['constructor'])['backbone']
    plain_cfg.pop('temporal_adapter')
    plain = MODELS.build(plain_cfg).double().eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if '.temporal_adapter.' not in k})
    with torch.no_grad():
        ref = plain(x)
        assert (model(x) - ref).abs().max() > 1e-2
        for m in temporal_adapters(model):
            m.up_proj.weight.zero_()
            m.up_proj.bias.zero_()
        assert torch.equal(model(x), ref)


def test_adatad_init():
    adapter = TemporalAdapter(64, kernel_size=3)
    assert adapter.gamma.shape == (1, )
    assert adapter.gamma.item() == 1.0
    assert not adapter.up_proj.weight.any() and not adapter.up_proj.bias.any()
    assert not adapter.dwconv.bias.any() and not adapter.conv.bias.any()
    assert adapter.dwconv.weight.shape == (16, 1, 3)
    assert adapter.conv.weight.shape == (16, 16, 1)
    # normal, std sqrt(2 / fan_in): 16 * 16 draws for the pointwise conv
    assert 0.2 < adapter.conv.weight.std().item() < 0.5


def test_pieces_equal_the_whole(fixture):
    from re2tal_mm.reversible.pieces import add_at_, take
    from re2tal_mm.rewiring.temporal_adapter import temporal_adapter_functions
    model = backbone(fixture)
    for m in temporal_adapters(model):
        m.clip_grid = ClipGrid(3, 2, 4, 2)
    f, _ = temporal_adapter_functions(model.blocks[0], dict(pieces=3))
    x = torch.randn(6, 16, 32, dtype=torch.float64)
    whole = f.fn(x)
    out = torch.zeros_like(whole)
    for p in f.split(x):
        add_at_(out, p.write, p.fn(take(x, p.read)))
    assert torch.allclose(out, whole, rtol=0, atol=1e-14)


@pytest.mark.parametrize('options', [dict(), dict(memory='floor')])
def test_reversible_grads_equal_autograd(options, fixture):
    """The fixture's model (drop path 0.1, trained adapters) rewired:
    reversible and autograd gradients agree in float64."""
    ref = backbone(fixture).train()
    rev = copy.deepcopy(ref)
    rewire(ref, 'autograd', **options)
    rewire(rev, 'reversible', **options)
    x = fixture['input']
    out_ref, gx_ref, g_ref = step(ref, x)
    out_rev, gx_rev, g_rev = step(rev, x)
    assert relative_error(out_rev, out_ref) < 1e-12
    assert relative_error(gx_rev, gx_ref) < 1e-10
    assert g_ref.keys() == g_rev.keys()
    assert len(g_ref) == 2 * 9  # two adapters, nothing else trains
    for n in g_ref:
        assert relative_error(g_rev[n], g_ref[n]) < 1e-10, n

"""OpenTAD's Re2TAL backbones (Swin-T, SlowFast) run here: fixtures made by
OpenTAD's own code (``../shared/reference/opentad/``) against our rewired
MMAction2 backbones, and the ``first_block`` rewiring option their SlowFast
checkpoints need."""
import copy

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.apis.opentad import slowfast, swin
from re2tal_mm.apis.opentad.backbones import build_backbone, run_backbone
from re2tal_mm.apis.opentad.keys import UnplacedTensorError
from re2tal_mm.engine.rewiring_meta import same_function
from re2tal_mm.reversible import relative_error
from re2tal_mm.rewiring import apply_rewiring, rewire, rewiring_spec, unwire

from .conftest import opentad_fixture
from .test_rewiring_zoo import bn_buffers, build, train_step

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def swin_fixture():
    return opentad_fixture('re2tal_swin.pth')


@pytest.fixture(scope='module')
def slowfast_fixture():
    return opentad_fixture('re2tal_slowfast.pth')


def max_diff(ours, theirs):
    assert ours.keys() == {k for k in ours if k in theirs}
    for k in ours:
        assert ours[k].shape == theirs[k].shape, k
        assert ours[k].dtype == torch.float64, k
    return {k: (ours[k] - theirs[k]).abs().max().item() for k in ours}


# ------------------------------------------------------------------ Swin
def test_swin_model_cfg(swin_fixture):
    assert swin.matches(swin_fixture) and not slowfast.matches(swin_fixture)
    cfg = swin.model_cfg(swin_fixture['constructor'])
    assert cfg == dict(
        backbone=dict(
            type='SwinTransformer3D', pretrained=None, pretrained2d=False,
            arch=dict(embed_dims=8, depths=[2, 2, 6, 2],
                      num_heads=[1, 2, 4, 8]),
            out_indices=(3, ), out_after_downsample=False,
            patch_size=(2, 4, 4), in_channels=3, window_size=(8, 3, 3),
            mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
            attn_drop_rate=0.0, drop_path_rate=0.2,
            act_cfg=dict(type='GELU'), norm_cfg=dict(type='LN'),
            patch_norm=True, frozen_stages=-1, with_cp=False),
        rewire=dict(mode='reversible'))


def test_swin_equals_opentad(swin_fixture):
    ours = swin.run_fixture(swin_fixture)
    assert ours.keys() == {'output'}
    diffs = max_diff(ours, swin_fixture)
    assert max(diffs.values()) <= 1e-10, diffs


def test_swin_autograd_mode_equals_opentad(swin_fixture):
    """OpenTAD's ``inv_mode='vanilla'`` is our ``'autograd'``: the same
    function."""
    constructor = dict(swin_fixture['constructor'], inv_mode=['vanilla'] * 4)
    cfg = swin.model_cfg(constructor)
    assert cfg['rewire'] == dict(mode='autograd')
    model = build_backbone(cfg, swin_fixture['state_dict'],
                           swin.convert_state_dict)
    out = run_backbone(model, swin_fixture['input'])[0]
    assert (out - swin_fixture['output']).abs().max() <= 1e-10


def test_swin_keys_one_to_one(swin_fixture):
    ours, dropped = swin.convert_state_dict(swin_fixture['state_dict'])
    assert not dropped and len(ours) == len(swin_fixture['state_dict'])
    assert 'layers.0.blocks.0.attn.qkv.weight' in ours
    assert 'layers.0.blocks.0.mlp.fc1.weight' in ours
    assert 'norm3.weight' in ours
    with pytest.raises(UnplacedTensorError, match='layers.0.blocks.0.xyz'):
        swin.convert_state_dict({'layers.0.blocks.0.xyz': torch.zeros(1)})


def test_model_cfg_refuses_what_does_not_map():
    with pytest.raises(ValueError, match='unknown constructor arguments'):
        swin.model_cfg(dict(cls='SwinTransformer3D_inv', use_checkpoint=1))
    with pytest.raises(ValueError, match='expected an OpenTAD'):
        swin.model_cfg(dict(cls='ResNet3dSlowFast_inv'))
    with pytest.raises(ValueError, match='inv_mode'):
        swin.model_cfg(dict(inv_mode=['reversible'] * 4))
    with pytest.raises(ValueError, match='MMAction2 counterpart'):
        slowfast.model_cfg(dict(slow_pathway=dict(
            type='resnet3d', lateral=True, lateral_inv=True)))


def test_swin_defaults_are_opentads():
    """Missing arguments take OpenTAD's defaults, not MMAction2's."""
    backbone = swin.model_cfg(dict(type='SwinTransformer3D_inv'))['backbone']
    assert backbone['patch_size'] == (4, 4, 4)
    assert backbone['window_size'] == (2, 7, 7)
    assert backbone['patch_norm'] is False
    assert backbone['drop_path_rate'] == 0.2


# -------------------------------------------------------------- SlowFast
SLOWFAST_CFG = dict(
    backbone=dict(
        type='ResNet3dSlowFast', pretrained=None, resample_rate=4,
        speed_ratio=4, channel_ratio=8,
        slow_pathway=dict(
            type='resnet3d', depth=50, lateral=True, fusion_kernel=7,
            conv1_kernel=(1, 7, 7), dilations=(1, 1, 1, 1),
            conv1_stride_t=1, pool1_stride_t=1, inflate=(0, 0, 1, 1),
            norm_eval=True, frozen_stages=-1, base_channels=8,
            pretrained=None),
        fast_pathway=dict(
            type='resnet3d', depth=50, lateral=False, base_channels=1,
            conv1_kernel=(5, 7, 7), conv1_stride_t=1, pool1_stride_t=1,
            norm_eval=True, frozen_stages=-1, pretrained=None)),
    rewire=dict(mode='reversible', first_block='opentad'))


def test_slowfast_model_cfg(slowfast_fixture):
    assert slowfast.matches(slowfast_fixture)
    assert not swin.matches(slowfast_fixture)
    assert slowfast.model_cfg(slowfast_fixture['constructor']) == \
        SLOWFAST_CFG


def test_slowfast_equals_opentad(slowfast_fixture):
    ours = slowfast.run_fixture(slowfast_fixture)
    assert list(ours) == ['output_slow', 'output_fast']
    diffs = max_diff(ours, slowfast_fixture)
    assert max(diffs.values()) <= 1e-10, diffs


def run_slowfast(fix, rewiring):
    cfg = dict(slowfast.model_cfg(fix['constructor']), rewire=rewiring)
    model = build_backbone(cfg, fix['state_dict'],
                           slowfast.convert_state_dict)
    return model, run_backbone(model, fix['input'])


def test_first_block_forms_differ_on_opentad_weights(slowfast_fixture):
    """MMAction2's first-block form is another function (the issue's
    0.59 / 0.15); OpenTAD's equals theirs in both modes."""
    expected = (slowfast_fixture['output_slow'],
                slowfast_fixture['output_fast'])
    for spec, close in ((dict(mode='reversible'), False),
                        (dict(mode='autograd', first_block='mmaction'),
                         False),
                        (dict(mode='autograd', first_block='opentad'), True)):
        _, outs = run_slowfast(slowfast_fixture, spec)
        diffs = [(o - e).abs().max().item() for o, e in zip(outs, expected)]
        if close:
            assert max(diffs) <= 1e-10, (spec, diffs)
        else:
            assert diffs[0] > 0.5 and diffs[1] > 0.1, (spec, diffs)


def test_slowfast_keys(slowfast_fixture):
    ours, dropped = slowfast.convert_state_dict(
        slowfast_fixture['state_dict'])
    assert not dropped and len(ours) == len(slowfast_fixture['state_dict'])
    for key in ('slow_path.layer1.0.conv1.conv.weight',
                'slow_path.layer1.0.downsample.bn.running_var',
                'fast_path.layer3.5.conv3.bn.weight',
                'slow_path.conv1_lateral.conv.weight',
                'slow_path.layer3_lateral.conv.weight'):
        assert key in ours, key
    with pytest.raises(UnplacedTensorError, match='slow_path.head.w'):
        slowfast.convert_state_dict({'slow_path.head.w': torch.zeros(1)})


# ------------------------------------------- the first_block option itself
def tiny_slowfast(norm_eval=False):
    cfg = copy.deepcopy(SLOWFAST_CFG)
    # two fast channels: a one-channel convolution before BatchNorm with
    # batch statistics is scale invariant (its gradient vanishes)
    for pathway, base in (('slow_pathway', 16), ('fast_pathway', 2)):
        cfg['backbone'][pathway].update(norm_eval=norm_eval,
                                        base_channels=base,
                                        stage_blocks=(2, 2, 3, 2))
    torch.manual_seed(0)
    model = build_backbone(dict(cfg, rewire=None))
    model.train()
    x = torch.randn(2, 3, 8, 32, 32, dtype=torch.float64)
    return model, x


def test_first_block_agrees_when_the_shortcut_adds_nothing():
    """With the shortcut at zero, relu(F(x)) + 0 == relu(F(x) + 0): the two
    forms agree (the chained blocks are the same in both)."""
    model, x = tiny_slowfast()
    model.eval()
    for m in model.modules():
        if hasattr(m, 'downsample') and m.downsample is not None:
            torch.nn.init.zeros_(m.downsample.bn.weight)
            torch.nn.init.zeros_(m.downsample.bn.bias)
    with torch.no_grad():
        rewire(model, 'autograd')
        ours = model(x)
        rewire(model, 'autograd', first_block='opentad')
        theirs = model(x)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize('norm_eval', [False, True])
def test_first_block_opentad_reversible_grads_equal_autograd(norm_eval):
    ref, x = tiny_slowfast(norm_eval)
    rev = copy.deepcopy(ref)
    rewire(ref, 'autograd', first_block='opentad')
    rewire(rev, 'reversible', first_block='opentad')
    gx_ref, g_ref = train_step(ref, x)
    gx_rev, g_rev = train_step(rev, x)
    assert relative_error(gx_rev, gx_ref) < 1e-10
    assert g_ref.keys() == g_rev.keys()
    assert all(g is not None for g in g_rev.values())
    # with batch statistics, the gradient of a BatchNorm bias whose shift a
    # later BatchNorm removes vanishes mathematically: a global scale
    floor = 1e-6 * max(g.norm() for g in g_ref.values())
    errors = {n: ((g_rev[n] - g_ref[n]).norm() /
                  max(g_ref[n].norm(), floor)).item() for n in g_ref}
    assert max(errors.values()) < 1e-10, max(errors.items(),
                                             key=lambda e: e[1])
    b_ref, b_rev = bn_buffers(ref), bn_buffers(rev)
    for n in b_ref:
        torch.testing.assert_close(b_rev[n], b_ref[n], rtol=1e-12, atol=0)


def test_first_block_recorded_validated_and_unwired():
    model, x = tiny_slowfast()
    model.eval()
    with torch.no_grad():
        stock = model(x)
        rewire(model, 'reversible', first_block='opentad')
        spec = rewiring_spec(model)
        assert spec == dict(mode='reversible', first_block='opentad')
        rewired = model(x)
        unwire(model)
        assert all('forward' not in m.__dict__ for m in model.modules())
        assert all(torch.equal(a, b) for a, b in zip(model(x), stock))
        apply_rewiring(model, spec)  # what a checkpoint's meta rebuilds
        assert all(torch.equal(a, b) for a, b in zip(model(x), rewired))
    with pytest.raises(ValueError, match="first_block='relu'"):
        rewire(model, first_block='relu')


def test_first_block_refused_where_a_stage_stays_plain():
    model, _ = build('x3d')  # its layer1 has one block: not rewired
    with pytest.raises(ValueError, match="stage 'layer1' is not rewired"):
        rewire(model, first_block='opentad')
    rewire(model)  # the default form leaves such stages as they are


def test_same_function_tells_first_block_forms_apart():
    default = dict(mode='reversible')
    assert same_function(default, dict(mode='autograd', memory='floor'))
    assert same_function(default, dict(mode='autograd',
                                       first_block='mmaction'))
    assert not same_function(default, dict(mode='reversible',
                                           first_block='opentad'))
    assert same_function(dict(mode='reversible', first_block='opentad'),
                         dict(mode='autograd', first_block='opentad'))
    assert not same_function(None, default)
    assert same_function(None, None)


# -------------------------------------------------- checkpoint conversion
def test_kinds_recognise_their_keys(swin_fixture, slowfast_fixture):
    sw, sf = swin_fixture['state_dict'], slowfast_fixture['state_dict']
    assert swin.owns_keys(sw) and not swin.owns_keys(sf)
    assert slowfast.owns_keys(sf) and not slowfast.owns_keys(sw)
    assert swin.ROLE == slowfast.ROLE == 'backbone'


@pytest.mark.parametrize('kind', [swin, slowfast])
def test_bare_backbone_converts_with_its_rewiring(kind, swin_fixture,
                                                  slowfast_fixture):
    """A converted bare backbone records the function OpenTAD computes
    (for SlowFast: its first-block form), which rebuilds our model."""
    from re2tal_mm.apis.opentad.checkpoint import convert_checkpoint
    fix = swin_fixture if kind is swin else slowfast_fixture
    ours, report = convert_checkpoint(fix['state_dict'])
    spec = ours['meta']['re2tal_rewiring']
    assert spec == kind.REWIRING == kind.model_cfg(fix['constructor'])[
        'rewire']
    assert report['mapped'] == len(fix['state_dict'])
    assert kind.REWIRING.get('first_block', 'mmaction') == (
        'opentad' if kind is slowfast else 'mmaction')

"""OpenTAD's ActionFormer detector against ours: the ``actionformer.pth``
fixture (OpenTAD's own outputs, float64) through our converter, neck
(``ActionFormerTransformerNeck``) and head, the localizer's path, and the
options that give OpenTAD's form."""
import copy

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.apis.opentad import actionformer as af
from re2tal_mm.apis.opentad.keys import UnplacedTensorError
from re2tal_mm.apis.opentad.parity import compare, format_rows, not_produced
from re2tal_mm.models.actionformer_neck import ScaledDropPath

from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from .conftest import opentad_fixture

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def fixture():
    """``actionformer.pth`` (skipped when absent, failed in CI)."""
    return opentad_fixture('actionformer.pth')


@pytest.fixture(scope='module')
def ours(fixture):
    torch.set_num_threads(1)
    return af.run_fixture(fixture)


# ------------------------------------------------------------ the fixture
def test_fixture_outputs_equal_ours(fixture, ours):
    """Per-level outputs to 1e-10, losses to 1e-6 (OpenTAD's focal loss is
    float32), targets exactly, post-processed results within rounding."""
    assert af.matches(fixture)
    rows = compare(fixture, ours)
    assert rows and all(r.ok for r in rows), format_rows(rows)
    missing = not_produced(fixture, ours)
    if 'post_processing' not in ours:  # that module is not there
        missing = [m for m in missing if not m.startswith('post_processing')]
    assert not missing
    ev = ours['eval']
    assert [f.shape[-1] for f in ev['neck_features']] == [64, 32, 16, 8, 4,
                                                          2]
    assert ev['cls_logits'][0].shape == (2, 5, 64)
    for name in ('quarter_grid', 'generic'):
        gt = ours['gt'][name]
        assert gt['train']['num_pos'] == fixture['gt'][name]['train'][
            'num_pos']
        assert gt['eval']['loss_normalizer_after'] == 100.  # untouched


def test_neck_features_keep_the_layernorm_bias_at_padding(fixture, ours):
    """FPNIdentity is not re-masked: the padded positions of video 1
    (valid 40 of 64) hold the output LayerNorm's bias, in theirs and ours."""
    bias = fixture['state_dict']['neck.fpn_norms.0.bias']
    feat = ours['eval']['neck_features'][0][1]
    assert torch.allclose(feat[:, 40:], bias[:, None].expand(-1, 24),
                          atol=1e-12)


def test_state_dict_maps_every_tensor(fixture):
    sd = fixture['state_dict']
    mapped, dropped = af.convert_state_dict(sd)
    assert len(sd) == len(mapped) == 230 and dropped == []
    assert mapped['head.loss_normalizer'].dtype == torch.float32
    assert mapped['head.loss_normalizer'] == 100
    assert mapped['neck.stem.0.drop_path_attn.weight'].shape == (32, )
    assert 'neck.stem.0.attn.query_conv.weight' in mapped
    assert 'neck.out_norms.5.bias' in mapped
    with pytest.raises(UnplacedTensorError, match='projection.proj.0'):
        af.convert_state_dict(dict(sd, **{'projection.proj.0.weight':
                                          torch.zeros(1)}))


def test_model_cfg(fixture):
    cfg = af.model_cfg(fixture['config'])
    neck, head = cfg['neck'], cfg['head']
    assert neck['type'] == 'ActionFormerTransformerNeck'
    assert neck['window_size'] == -1 and neck['arch'] == (2, 2, 5)
    assert neck['drop_path'] == 0.1 and neck['norm_eps'] == 1e-6
    assert head['norm_eps'] == 1e-6 and head['tower_bias'] is False
    assert head['regress_ranges'][-1] == (64, 10000)
    bad = copy.deepcopy(fixture['config'])
    bad['rpn_head']['center_sample'] = 'none'
    with pytest.raises(ValueError, match='center_sample'):
        af.model_cfg(bad)
    bad = copy.deepcopy(fixture['config'])
    bad['neck']['num_levels'] = 5
    with pytest.raises(ValueError, match='FPNIdentity'):
        af.model_cfg(bad)


def test_localizer_path_gives_the_fixture_levels(fixture):
    """``TemporalActionLocalizer._forward`` (the path of training and
    prediction: mask from ``valid_steps``, padding, neck, head) on the
    fixture's features gives OpenTAD's per-level outputs at the valid
    positions (float32: the localizer casts feature inputs)."""
    model = MODELS.build(dict(type='TemporalActionLocalizer',
                              **af.model_cfg(fixture['config']))).eval()
    mapped, _ = af.convert_state_dict(fixture['state_dict'])
    model.load_state_dict({k: v.float() for k, v in mapped.items()},
                          strict=True)
    samples = []
    for n in fixture['masks'].sum(1).tolist():
        s = ActionDataSample()
        s.set_metainfo(dict(valid_steps=n))
        samples.append(s)
    with torch.no_grad():
        cls_outs, reg_outs, masks, _ = model._forward(
            fixture['features'].float(), samples)
    ev = fixture['eval']
    for lvl, m in enumerate(masks):
        assert torch.equal(m, ev['level_masks'][lvl])
        w = m[:, None].double()
        for got, exp in ((cls_outs[lvl], ev['cls_logits'][lvl]),
                         (reg_outs[lvl], ev['reg_offsets'][lvl])):
            diff = (got.transpose(1, 2).double() - exp * w).abs().max()
            assert diff < 1e-4 * max(1., exp.abs().max()), (lvl, diff)


# --------------------------------------------------------------- the neck
def _neck(**kw):
    cfg = dict(type='ActionFormerTransformerNeck', in_channels=6,
               embed_dims=16, arch=(2, 1, 3), num_heads=2, window_size=-1,
               drop_path=0.1)
    return MODELS.build(dict(cfg, **kw)).double().eval()


def _masked_input(T=32, valid=(32, 13)):
    torch.manual_seed(0)
    x = torch.randn(2, 6, T, dtype=torch.float64)
    mask = torch.arange(T)[None] < torch.tensor(valid)[:, None]
    return x * mask[:, None], mask


@pytest.mark.parametrize('window', [-1, 5])
def test_neck_valid_outputs_do_not_depend_on_padding(window):
    """OpenTAD pads to max_seq_len, our localizer to the largest stride:
    the valid positions agree (global and local attention)."""
    neck = _neck(window_size=window)
    x, mask = _masked_input()
    long_x, long_mask = torch.nn.functional.pad(x, (0, 32)), \
        torch.nn.functional.pad(mask, (0, 32))
    with torch.no_grad():
        short, masks = neck(x, mask)
        long, _ = neck(long_x, long_mask)
    for a, b, m in zip(short, long, masks):
        diff = (a - b[..., :a.shape[-1]]).abs() * m[:, None]
        assert diff.max() < 1e-12


def test_neck_mask_outputs_zeroes_padding_only():
    x, mask = _masked_input()
    torch.manual_seed(1)
    theirs, ours = _neck(), _neck(mask_outputs=True)
    with torch.no_grad():
        for norm in theirs.out_norms:
            norm.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    with torch.no_grad():
        a, masks = theirs(x, mask)
        b, _ = ours(x, mask)
    for fa, fb, m in zip(a, b, masks):
        assert torch.equal(fa * m[:, None], fb)
        assert (fa[1][:, ~m[1]] != 0).any()  # OpenTAD's: the LN bias


def test_scaled_drop_path_is_affine_drop_path():
    layer = ScaledDropPath(4, drop_prob=0.5).double()
    assert layer.weight.tolist() == pytest.approx([1e-4] * 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([.5, 1., 2., 3.]))
    x = torch.randn(64, 4, 3, dtype=torch.float64)
    scale = layer.weight.detach().view(1, 4, 1)
    assert torch.equal(layer.eval()(x), x * scale)
    torch.manual_seed(0)
    out = layer.train()(x)
    kept = out.flatten(1).abs().sum(1) > 0
    assert 0 < kept.sum() < 64
    assert torch.allclose(out[kept], x[kept] * scale / 0.5)
    # no drop path, no scales (OpenTAD's blocks then have none)
    assert not any(isinstance(m, ScaledDropPath)
                   for m in _neck(drop_path=0.).modules())


def test_neck_argument_errors():
    with pytest.raises(ValueError, match='windows'):
        _neck(window_size=[5, 5])
    neck = _neck(abs_pe=True, max_seq_len=16).train()
    x, mask = _masked_input()
    with pytest.raises(ValueError, match='max_seq_len'):
        neck(x, mask)
    neck.eval()(x, mask)  # eval mode interpolates the table


# --------------------------------------------------------------- the head
def _head(**kw):
    cfg = dict(type='ActionFormerHead', num_classes=2, in_channels=8,
               feat_channels=8, strides=(1, 2, 4),
               regress_ranges=((0, 4), (4, 8), (8, 1e8)))
    return MODELS.build(dict(cfg, **kw)).double()


def _levels(T=16, scale=1.):
    torch.manual_seed(0)
    feats = [torch.randn(1, 8, T // s, dtype=torch.float64) * scale
             for s in (1, 2, 4)]
    return feats, [torch.ones(1, T // s, dtype=torch.bool) for s in (1, 2, 4)]


def test_centre_sampling_border_is_outside():
    """Points exactly on the centre region's border are not positives (as
    ActionFormer / OpenTAD): [10, 13] at stride 1, radius 1.5."""
    head = _head()
    points = head.points([torch.ones(1, 64 // s, dtype=torch.bool)
                          for s in (1, 2, 4)])
    cls_t, reg_t = head.assign(points, torch.tensor([[10., 13.]]),
                               torch.tensor([1]))
    pos = cls_t.sum(1) > 0
    assert points[pos, 0].tolist() == [11, 12]
    # the border points 10 and 13 hold don't-care distances (not positives)
    assert reg_t[10].tolist() == [0, 3]


def test_tower_bias_and_norm_eps():
    ours, theirs = _head(), _head(tower_bias=False, norm_eps=1e-6)
    assert all(conv.bias is None for conv, _ in theirs.cls_tower)
    assert theirs.cls_tower[0][1].eps == 1e-6
    with torch.no_grad():
        for conv, _ in ours.cls_tower + ours.reg_tower:
            conv.bias.zero_()
    ours.load_state_dict(theirs.state_dict(), strict=False)
    feats, masks = _levels()
    a, b = ours.level_outputs(feats, masks), theirs.level_outputs(feats,
                                                                  masks)
    # zero biases, inputs of unit scale: eps 1e-5 vs 1e-6 is ~1e-6 apart
    assert max((p - q).abs().max() for p, q in zip(a[0], b[0])) < 1e-4
    feats, masks = _levels(scale=1e-3)  # small activations: eps matters
    a, b = ours.level_outputs(feats, masks), theirs.level_outputs(feats,
                                                                  masks)
    assert max((p - q).abs().max() for p, q in zip(a[0], b[0])) > 1e-2


def _loss(head, train=False, **gt):
    head.train(train)
    head.loss_normalizer.fill_(100.)
    feats, masks = _levels()
    cls_outs, reg_outs = head(feats, masks)
    return head.loss(cls_outs, reg_outs, masks,
                     [torch.tensor([[2.2, 7.9]], dtype=torch.float64)],
                     [torch.tensor([1])])


def test_label_smoothing():
    head, zero, smooth = _head(), _head(label_smoothing=0.), _head(
        label_smoothing=0.1)
    zero.load_state_dict(head.state_dict())
    smooth.load_state_dict(head.state_dict())
    plain, smoothed = _loss(head), _loss(smooth)
    assert _loss(zero) == plain
    assert smoothed['loss_cls'] != plain['loss_cls']
    assert smoothed['loss_reg'] == plain['loss_reg']
    # OpenTAD's targets: t * (1 - eps) + eps / (K + 1)
    feats, masks = _levels()
    logits = torch.cat(head(feats, masks)[0], 1)[0]
    cls_t = head.assign(head.points(masks), torch.tensor([[2.2, 7.9]]),
                        torch.tensor([1]))[0]
    num_pos = int((cls_t.sum(1) > 0).sum())
    want = head.loss_cls(logits, cls_t * 0.9 + 0.1 / 3) / num_pos
    assert torch.allclose(smoothed['loss_cls'], want)


def test_loss_normalizer_eval_uses_the_batch_count():
    """Eval mode: ``max(num_pos, 1)``, buffer untouched; training: the EMA,
    updated (OpenTAD's; ours divided by the buffer in eval mode too)."""
    head = _head()
    evl = _loss(head)
    assert head.loss_normalizer == 100.
    train = _loss(head, train=True)
    feats, masks = _levels()
    cls_t = head.assign(head.points(masks), torch.tensor([[2.2, 7.9]]),
                        torch.tensor([1]))[0]
    num_pos = int((cls_t.sum(1) > 0).sum())
    assert float(head.loss_normalizer) == pytest.approx(90 + 0.1 * num_pos)
    assert evl['loss_cls'].item() * num_pos == pytest.approx(
        train['loss_cls'].item() * float(head.loss_normalizer))

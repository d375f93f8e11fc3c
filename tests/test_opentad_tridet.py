"""OpenTAD's TriDet (``../shared/reference/opentad/tridet.pth``) on our
TriDetNeck + TriDetHead: every tensor converted, the same per-level outputs,
losses and post-processed results; and each option that gives OpenTAD's
function against our default."""
import copy

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.apis.opentad import tridet
from re2tal_mm.apis.opentad.keys import UnplacedTensorError
from re2tal_mm.apis.opentad.parity import FLOAT32, compare
from re2tal_mm.models.tridet_head import neighbour_responses
from re2tal_mm.models.tridet_neck import SGPBlock

from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from .conftest import opentad_fixture

FIXTURE = 'tridet.pth'  # in ../shared/reference/opentad

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def fixture():
    return opentad_fixture(FIXTURE)


@pytest.fixture(scope='module')
def ours(fixture):
    return tridet.run_fixture(fixture)


def _model(fixture, dtype=torch.float64, **head):
    cfg = copy.deepcopy(tridet.model_cfg(fixture['config']))
    cfg['head'].update(head)
    cfg['neck']['drop_path'] = 0.
    model = MODELS.build(dict(type='TemporalActionLocalizer', **cfg))
    model = model.to(dtype).eval()
    model.load_state_dict(tridet.convert_state_dict(
        fixture['state_dict'])[0])
    return model


def test_recognises_the_fixture(fixture):
    assert tridet.matches(fixture)
    assert not tridet.matches(dict(config=dict(type='ActionFormer')))


def test_every_tensor_maps_and_fills_our_model(fixture):
    ours, dropped = tridet.convert_state_dict(fixture['state_dict'])
    assert dropped == [] and len(ours) == len(fixture['state_dict']) == 193
    model = MODELS.build(dict(type='TemporalActionLocalizer',
                              **tridet.model_cfg(fixture['config'])))
    assert set(ours) == set(model.state_dict())
    # OpenTAD's start bin j is distance num_bins - j: ours reversed
    w = fixture['state_dict']['rpn_head.reg_head.weight']
    assert torch.equal(ours['head.reg_out.weight'][0], w[16])
    assert torch.equal(ours['head.reg_out.weight'][17], w[17])
    assert torch.equal(tridet.reverse_start_bins(
        tridet.reverse_start_bins(w)), w)
    with pytest.raises(UnplacedTensorError, match='rpn_head.extra'):
        tridet.convert_state_dict({'rpn_head.extra.weight': w})


def test_unsupported_settings_are_named(fixture):
    cfg = copy.deepcopy(fixture['config'])
    cfg['projection']['downsample_type'] = 'avg'
    with pytest.raises(NotImplementedError, match='downsample_type'):
        tridet.model_cfg(cfg)


def test_outputs_equal_the_fixture(fixture, ours):
    """Per-level outputs to 1e-10, losses to 1e-6, results within
    OpenTAD's rounding. OpenTAD decodes the boundaries in float32
    (``decoded_offsets``, stride units): the segments of ``nms_raw`` are
    those times the stride (up to 32), so their tolerance is 32 x."""
    assert set(ours) >= {'eval', 'gt', 'post_processing'}
    bad = []
    for row in compare(fixture, ours):
        tol = row.tol
        if '.nms_raw' in row.path and 'segments' in row.path:
            tol = FLOAT32 * max(fixture['eval']['points'][:, 3].tolist())
        if not row.diff <= tol:
            bad.append(row)
    assert not bad, bad


def test_fixture_segments_are_its_float32_decoded_offsets(fixture):
    """The tolerance above: OpenTAD's NMS input segments are exactly its
    float32 decoded offsets times the stride."""
    ev, raw = fixture['eval'], fixture['post_processing']['nms_raw'][0]
    pts = ev['points'].double()
    off = ev['decoded_offsets'][0]  # (K, N, 2)
    segs = torch.stack([pts[:, 0] - off[..., 0] * pts[:, 3],
                        pts[:, 0] + off[..., 1] * pts[:, 3]], -1)
    segs, scores = segs.transpose(0, 1).reshape(-1, 2), ev['scores'][0]
    keep = scores.reshape(-1) > 0.001
    order = scores.reshape(-1)[keep].sort(descending=True).indices
    assert torch.equal(segs[keep][order], raw['in_segments'])


def test_targets_equal_the_fixture_at_positives(fixture):
    model = _model(fixture)
    masks = model.neck(fixture['features_padded'],
                       fixture['masks_padded'])[1]
    points = model.head.points(masks)
    for gt in fixture['gt'].values():
        for i, (s, lab) in enumerate(zip(gt['gt_segments'],
                                         gt['gt_labels'])):
            cls_t, reg_t = model.head.assign(points, s, lab)
            assert torch.equal(cls_t.double(), gt['targets_cls'][i])
            pos = cls_t.sum(-1) > 0
            assert torch.allclose(reg_t[pos], gt['targets_reg'][i][pos],
                                  atol=1e-12, rtol=0)


def test_localizer_forward_path_float32(fixture):
    """What training and testing run: the localizer's ``_forward`` (float32
    features, valid lengths from the samples' metainfo) gives the fixture's
    scores and decoded boundaries (float32 precision)."""
    model = _model(fixture, torch.float32)
    samples = []
    for valid in fixture['masks'].sum(1).tolist():
        samples.append(ActionDataSample())
        samples[-1].set_metainfo(dict(valid_steps=valid))
    with torch.no_grad():
        cls_outs, reg_outs, masks, ratio = model._forward(
            fixture['features'].float(), samples)
    assert ratio == 1 and torch.equal(masks[0], fixture['masks'])
    scores = torch.cat(cls_outs, 1).sigmoid() * torch.cat(masks, 1)[..., None]
    assert torch.allclose(scores.double(), fixture['eval']['scores'],
                          atol=1e-5)
    dist = model.head.distances(reg_outs).permute(0, 2, 1, 3).double()
    assert torch.allclose(dist, fixture['eval']['decoded_offsets'],
                          atol=1e-3)


def test_float64_loss_does_not_crash():
    """Our TriDetHead.loss on float64 outputs (it multiplied a float32
    weight by a float64 IoU)."""
    head = MODELS.build(dict(type='TriDetHead', num_classes=2,
                             in_channels=8, feat_channels=8,
                             strides=(1, 2), num_bins=4,
                             regress_ranges=((0, 4), (4, 1e8)))).double()
    feats = [torch.randn(1, 8, 16, dtype=torch.float64),
             torch.randn(1, 8, 8, dtype=torch.float64)]
    masks = [torch.ones(1, 16, dtype=torch.bool),
             torch.ones(1, 8, dtype=torch.bool)]
    cls_outs, reg_outs = head(feats, masks)
    losses = head.loss(cls_outs, reg_outs, masks,
                       [torch.tensor([[2., 9.]], dtype=torch.float64)],
                       [torch.tensor([1])])
    # (DIoU1DLoss computes in float32)
    assert losses['loss_cls'].dtype == torch.float64
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


# ------------------------------------------------------------- options
def test_pool_padding():
    """'-inf' pools the first position over two instants; 'zero' also over
    a zero: they differ on negative features, agree on positive ones."""
    zero, ninf = SGPBlock(16, 1), SGPBlock(16, 1, pool_padding='-inf')
    x = -torch.rand(1, 16, 8) - 1
    assert not torch.equal(zero.pool(x), ninf.pool(x))
    assert float(zero.pool(x)[..., 0].max()) == 0
    assert torch.equal(zero.pool(-x), ninf.pool(-x))
    with pytest.raises(ValueError, match='pool_padding'):
        SGPBlock(16, 1, pool_padding='reflect')


def _neck_pair(**kw):
    cfg = dict(type='TriDetNeck', in_channels=8, embed_dims=16,
               num_levels=3, mlp_dims=32, num_groups=4, drop_path=0.,
               layer_scale=None, **kw)
    torch.manual_seed(0)
    a = MODELS.build(cfg).eval()
    b = MODELS.build(dict(cfg, padded_positions='computed')).eval()
    b.load_state_dict(a.state_dict())
    return a, b


def test_padded_positions_neck():
    """Equal without padding; with padding 'computed' (OpenTAD) changes the
    valid positions (GroupNorm statistics, the mean, the wide window) and
    depends on the padded length, 'masked' does not."""
    masked, computed = _neck_pair()
    x = torch.randn(1, 8, 32)
    full = torch.ones(1, 32, dtype=torch.bool)
    for a, b in zip(masked(x, full)[0], computed(x, full)[0]):
        assert torch.allclose(a, b, atol=1e-6)
    short = full.clone()
    short[:, 20:] = False
    xs = x * short[:, None]
    fm, fc = masked(xs, short)[0][0], computed(xs, short)[0][0]
    assert (fm[..., :20] - fc[..., :20]).abs().max() > 1e-3
    longer = torch.nn.functional.pad(short, (0, 32))
    xl = torch.nn.functional.pad(xs, (0, 32))
    assert torch.allclose(masked(xl, longer)[0][0][..., :20], fm[..., :20],
                          atol=1e-5)
    assert (computed(xl, longer)[0][0][..., :20]
            - fc[..., :20]).abs().max() > 1e-4


def test_outside_neighbours():
    """'zero' (OpenTAD) gives every neighbour outside the sequence logit 0,
    'virtual' only the one just outside: equal for instants num_bins or
    more from the border, different at the border."""
    resp = torch.randn(1, 2, 12)
    mask = torch.ones(1, 12, dtype=torch.bool)
    for side, border, inner in (('start', 0, 8), ('end', 11, 3)):
        v = neighbour_responses(resp, mask, 4, side)
        z = neighbour_responses(resp, mask, 4, side, outside='zero')
        assert torch.equal(v[:, inner], z[:, inner])
        assert torch.isinf(v[:, border, :, 2:]).all()
        assert (z[:, border, :, 1:] == 0).all()


def test_outside_neighbours_on_the_fixture(fixture):
    """Our default boundary decoding moves the fixture's border instants
    by up to ~9 strides; interior instants agree."""
    theirs = _model(fixture)
    ours = _model(fixture, outside_neighbours='virtual')
    with torch.no_grad():
        feats, masks = theirs.neck(fixture['features'], fixture['masks'])
        d = [m.head.distances(m.head(feats, masks)[1]) for m in
             (theirs, ours)]
    diff = (d[0] - d[1]).abs()
    assert diff.max() > 5
    # level 0 interior of video 0 (valid 64): no neighbour outside
    assert diff[0, 16:48].max() < 1e-12


def test_offset_relu_and_tower_options(fixture):
    model = _model(fixture, offset_relu=False)
    with torch.no_grad():
        feats, masks = model.neck(fixture['features'], fixture['masks'])
        off = model.head.level_outputs(feats, masks)[1]
        relu = _model(fixture).head.level_outputs(feats, masks)[1]
    assert min(float(o.min()) for o in off) < 0
    assert all(torch.equal(o.clamp(min=0), r) for o, r in zip(off, relu))
    keys = model.state_dict()
    assert 'head.start_branch.tower.0.0.bias' not in keys
    assert 'neck.embed.0.bias' not in keys
    assert model.head.start_branch['tower'][0][1].eps == 1e-6
    default = MODELS.build(dict(type='TriDetHead', num_classes=2,
                                in_channels=8, feat_channels=8))
    assert 'start_branch.tower.0.0.bias' in default.state_dict()


def test_eval_reg_norm(fixture):
    """In eval mode 'count' (OpenTAD's TriDet) divides the regression loss
    by the positives, 'ema' by the buffer; training is the same."""
    gt = fixture['gt']['generic']
    out = {}
    for norm in ('ema', 'count'):
        model = _model(fixture, eval_reg_norm=norm)
        for training in (False, True):
            model.train(training)
            model.head.loss_normalizer.fill_(100.)
            with torch.no_grad():
                feats, masks = model.neck(fixture['features_padded'],
                                          fixture['masks_padded'])
                out[norm, training] = model.head.loss(
                    *model.head(feats, masks), masks, gt['gt_segments'],
                    gt['gt_labels'])
    num_pos = gt['eval']['num_pos']
    assert torch.allclose(out['ema', False]['loss_reg'] * 100 / num_pos,
                          out['count', False]['loss_reg'])
    assert torch.equal(out['ema', False]['loss_cls'],
                       out['count', False]['loss_cls'])
    assert torch.equal(out['ema', True]['loss_reg'],
                       out['count', True]['loss_reg'])

"""Unit tests of the localizer parts: NMS, assignment, padding, video mode."""
import copy
import json
import math

import pytest
import torch
from mmengine.structures import InstanceData

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm import rewiring
from re2tal_mm.structures import segment_nms

from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample

pytestmark = pytest.mark.usefixtures('one_thread')


# ------------------------------------------------------------------ NMS
def _tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def brute_nms(segs, scores, labels, method, thr, sigma, min_score, agnostic):
    segs, scores, labels = segs.tolist(), scores.tolist(), labels.tolist()
    alive = [i for i in range(len(scores)) if scores[i] >= min_score]
    out = []
    while alive:
        i = max(alive, key=lambda j: (scores[j], -j))
        out.append((segs[i], scores[i], labels[i]))
        alive.remove(i)
        for j in list(alive):
            if not agnostic and labels[j] != labels[i]:
                continue
            iou = _tiou(segs[i], segs[j])
            if method == 'hard':
                if iou >= thr:
                    alive.remove(j)
            else:
                scores[j] *= math.exp(-iou**2 / sigma)
                if scores[j] < min_score:
                    alive.remove(j)
    return out


@pytest.mark.parametrize('method', ['hard', 'soft'])
@pytest.mark.parametrize('agnostic', [False, True])
def test_nms_matches_brute_force(method, agnostic):
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        n = 40
        start = torch.rand(n, generator=g) * 10
        segs = torch.stack(
            [start, start + 0.2 + torch.rand(n, generator=g) * 3], 1).double()
        scores = torch.rand(n, generator=g).double()
        labels = torch.randint(0, 3, (n, ), generator=g)
        s, sc, lab = segment_nms(segs,
                                 scores,
                                 labels,
                                 iou_threshold=0.4,
                                 method=method,
                                 sigma=0.5,
                                 min_score=0.05,
                                 max_num=1000,
                                 class_agnostic=agnostic)
        ref = brute_nms(segs, scores, labels, method, 0.4, 0.5, 0.05, agnostic)
        assert len(ref) == len(s)
        assert torch.allclose(s, torch.tensor([r[0] for r in ref]).to(s))
        assert torch.allclose(sc.double(),
                              torch.tensor([r[1] for r in ref],
                                           dtype=torch.double),
                              atol=1e-5)
        assert lab.tolist() == [r[2] for r in ref]


def test_post_processor_topk_agnostic_and_fusion(tmp_path):
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.05, 0.0]])
    segs = torch.tensor([[0., 1.], [5., 6.], [7., 8.]])
    pp = MODELS.build(
        dict(type='TALPostProcessor',
             score_thr=0.15,
             nms=dict(method='hard', iou_threshold=0.5)))
    out = pp(scores, segs)
    assert out.scores.tolist() == pytest.approx([0.9, 0.8, 0.2])
    assert out.labels.tolist() == [0, 1, 0]
    pp = MODELS.build(
        dict(type='TALPostProcessor',
             score_thr=0.15,
             class_agnostic=True,
             nms=None))
    assert pp(scores, segs).labels.tolist() == [0, 1]
    f = tmp_path / 'cls.json'
    f.write_text(json.dumps({'results': {'vid': [0.1, 0.7, 0.2]}}))
    pp = MODELS.build(
        dict(type='TALPostProcessor',
             score_thr=0.15,
             nms=None,
             external_classifier=str(f),
             external_topk=2))
    out = pp(scores, segs, 'vid')
    assert out.labels.tolist() == [1, 2, 1, 2]
    assert out.scores.tolist() == pytest.approx([.63, .18, .56, .16])
    assert out.segments[:2].tolist() == [[0., 1.], [0., 1.]]


# ------------------------------------------------------------ assignment
def _head():
    return MODELS.build(
        dict(type='ActionFormerHead',
             num_classes=2,
             in_channels=8,
             feat_channels=8,
             strides=(1, 2, 4),
             regress_ranges=((0, 4), (4, 8), (8, 1e8)),
             center_sample_radius=1.5))


def _positives(head, segs, labels, T=64):
    masks = [torch.ones(1, T // s, dtype=torch.bool) for s in (1, 2, 4)]
    points = head.points(masks)
    cls_t, reg_t = head.assign(points, torch.tensor(segs),
                               torch.tensor(labels))
    pos = cls_t.sum(1) > 0
    return points[pos], cls_t[pos], reg_t[pos]


def test_assignment_short_segment_goes_to_level_0():
    # the centre region is [10, 13]: its border points 10 and 13 are outside
    pts, cls_t, reg_t = _positives(_head(), [[10., 13.]], [1])
    assert pts[:, 0].tolist() == [11, 12]
    assert pts[:, 3].tolist() == [1, 1]
    assert cls_t.tolist() == [[0, 1]] * 2
    assert reg_t.tolist() == [[1, 2], [2, 1]]


def test_assignment_long_segment_goes_to_its_range_level():
    pts, cls_t, reg_t = _positives(_head(), [[0., 40.]], [0])
    assert pts[:, 0].tolist() == [16, 20, 24]  # centre +- 1.5 * 4
    assert pts[:, 3].tolist() == [4, 4, 4]
    assert cls_t.tolist() == [[1, 0]] * 3
    assert reg_t.tolist() == [[4, 6], [5, 5], [6, 4]]  # in strides


def test_assignment_prefers_shorter_segment():
    pts, cls_t, reg_t = _positives(_head(), [[0., 40.], [2., 38.]], [0, 1])
    assert pts[:, 0].tolist() == [16, 20, 24]
    assert cls_t.tolist() == [[0, 1]] * 3
    assert reg_t[1].tolist() == [4.5, 4.5]


def test_losses_are_zero_at_perfect_prediction():
    diou = MODELS.build(dict(type='DIoU1DLoss'))
    giou = MODELS.build(dict(type='DIoU1DLoss', mode='giou'))
    t = torch.tensor([[1., 2.], [3., 0.5]])
    assert float(diou(t, t)) == pytest.approx(0, abs=1e-6)
    assert float(giou(t, t)) == pytest.approx(0, abs=1e-6)
    assert float(diou(t, torch.tensor([[2., 1.], [0.5, 3.]]))) > 0
    focal = MODELS.build(dict(type='TALSigmoidFocalLoss'))
    assert float(focal(torch.tensor([20., -20.]), torch.tensor([1., 0.]))) \
        < 1e-6


# ---------------------------------------------------------------- padding
def _sample(n, fps=10.0):
    s = ActionDataSample()
    s.set_metainfo(
        dict(video_id='v',
             fps=fps,
             grid_stride=1,
             window_offset=0.0,
             valid_steps=n,
             window_duration=n / fps))
    return s


def _feature_model(levels=6, **neck):
    strides = tuple(2**i for i in range(levels))
    ranges = tuple(
        (0 if i == 0 else 4 * 2**(i - 1), 4 * 2**i if i < levels - 1 else 1e8)
        for i in range(levels))
    return MODELS.build(
        dict(type='TemporalActionLocalizer',
             neck=dict(type='ActionFormerNeck',
                       in_channels=6,
                       embed_dims=16,
                       num_levels=levels,
                       num_heads=2,
                       window_size=5,
                       **neck),
             head=dict(type='ActionFormerHead',
                       num_classes=3,
                       in_channels=16,
                       feat_channels=16,
                       strides=strides,
                       regress_ranges=ranges)))


# the default neck, and the published ActionFormer's (a second full-length
# block, normalised levels)
PUBLISHED_NECK = dict(num_stem_blocks=2, out_norm=True)


@pytest.mark.parametrize('neck', [{}, PUBLISHED_NECK])
@pytest.mark.parametrize('n', [50, 64])
def test_outputs_unchanged_when_longer_sample_is_batched(n, neck):
    torch.manual_seed(0)
    model = _feature_model(**neck).eval()
    blocks = [k for k in model.neck.state_dict() if k.endswith('attn.qkv.'
                                                               'weight')]
    assert len(blocks) == 6 + bool(neck)
    a, b = torch.randn(6, n), torch.randn(6, 157)
    with torch.no_grad():
        alone = model.data_preprocessor(
            dict(inputs=[a], data_samples=[_sample(n)]))
        both = model.data_preprocessor(
            dict(inputs=[a, b], data_samples=[_sample(n),
                                              _sample(157)]))
        c1, r1, m1, _ = model(**alone, mode='tensor')
        c2, r2, m2, _ = model(**both, mode='tensor')
        for lvl in range(6):
            v = int(m1[lvl][0].sum())
            assert v == math.ceil(n / 2**lvl) == int(m2[lvl][0].sum())
            assert torch.allclose(c1[lvl][0, :v], c2[lvl][0, :v], atol=1e-5)
            assert torch.allclose(r1[lvl][0, :v], r2[lvl][0, :v], atol=1e-5)
        p1 = model(**alone, mode='predict')[0].pred_instances
        p2 = model(**both, mode='predict')[0].pred_instances
    # the same candidates; no NMS per window (the metric merges), so the
    # 2000 are in score order, where near ties (1e-6) may swap: matched
    assert torch.allclose(p1.scores, p2.scores, atol=1e-5)
    assert len(p1.segments) == len(p2.segments)
    rows = torch.cat([p1.segments, p1.labels[:, None].float()], 1)
    other = torch.cat([p2.segments, p2.labels[:, None].float()], 1)
    dist = (rows[:, None] - other[None]).abs().amax(-1)
    assert float(dist.amin(1).max()) < 1e-4


# ------------------------------------------------------------- video mode
def _video_model(in_channels=48, **kw):
    kw.setdefault(
        'backbone',
        dict(type='SwinTransformer3D',
             arch=dict(embed_dims=24, depths=[2, 2], num_heads=[2, 2]),
             patch_size=(2, 4, 4),
             window_size=(4, 4, 4),
             out_indices=(1, ),
             drop_path_rate=0.0,
             pretrained=None))
    return MODELS.build(
        dict(type='TemporalActionLocalizer',
             data_preprocessor=dict(type='ActionDataPreprocessor',
                                    mean=[128.] * 3,
                                    std=[64.] * 3,
                                    format_shape='NCTHW'),
             neck=dict(type='ActionFormerNeck',
                       in_channels=in_channels,
                       embed_dims=16,
                       num_levels=3,
                       num_heads=2,
                       window_size=3,
                       drop_path=0.0),
             head=dict(type='ActionFormerHead',
                       num_classes=2,
                       in_channels=16,
                       feat_channels=16,
                       strides=(1, 2, 4),
                       regress_ranges=((0, 2), (2, 4), (4, 1e8))),
             **kw))


def _video_batch(T=16):
    g = torch.Generator().manual_seed(1)
    inputs, samples = [], []
    for i in range(2):
        inputs.append(
            torch.randint(0,
                          256, (1, 3, T, 32, 32),
                          generator=g,
                          dtype=torch.uint8))
        s = ActionDataSample()
        s.set_metainfo(
            dict(video_id=f'v{i}',
                 fps=8.0,
                 frame_stride=1,
                 window_offset=1.0 * i,
                 window_duration=T / 8,
                 num_frames=T,
                 duration=10.0))
        gt = InstanceData()
        gt.segments = torch.tensor([[0.25 + i, 1.25 + i]])
        gt.labels = torch.tensor([i])
        s.gt_instances = gt
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def test_video_mode_training_step_and_predict():
    torch.manual_seed(0)
    model = _video_model(backbone_frames_per_call=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = model.data_preprocessor(_video_batch(), True)
    assert data['inputs'].shape == (2, 1, 3, 16, 32, 32)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_reg'}
    total = sum(losses.values())
    assert torch.isfinite(total) and losses['loss_reg'].item() > 0
    opt.zero_grad()
    total.backward()
    grad = model.backbone.patch_embed.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    opt.step()
    model.eval()
    with torch.no_grad():  # backbone at inference in 2 calls
        out = model(**model.data_preprocessor(_video_batch()), mode='predict')
    p = out[1].pred_instances
    assert p.segments.shape[1] == 2 and len(p.scores) == len(p.labels)
    assert float(p.segments.min()) >= 1.0 and float(p.segments.max()) <= 3.0


def test_two_pathway_outputs_are_pooled_aligned_and_concatenated():
    model = _feature_model(3)
    slow, fast = torch.randn(2, 8, 4, 3, 3), torch.randn(2, 4, 16, 3, 3)
    out = model._pool((slow, fast), 2)
    assert out.shape == (2, 12, 16)
    assert torch.allclose(out[:, 8:], fast.mean((-2, -1)))


def test_each_pathway_is_resampled_once_to_feat_len():
    """With a detector length, each output goes straight to it (as OpenTAD
    interpolates each pathway); resampling the slow pathway to the fast
    one's length first, then to feat_len, is another function where the
    lengths are not multiples of each other (equal, to rounding, where
    they are: 256 and 1024 to 512)."""
    import torch.nn.functional as F

    from re2tal_mm.models.pooling import pool_backbone_outputs
    slow, fast = torch.randn(2, 8, 3, 3, 3), torch.randn(2, 4, 16, 3, 3)
    out = pool_backbone_outputs((slow, fast), 2, length=8)
    once = [F.interpolate(o.mean((-2, -1)), size=8, mode='linear',
                          align_corners=False) for o in (slow, fast)]
    assert torch.equal(out, torch.cat(once, 1))
    twice = F.interpolate(F.interpolate(slow.mean((-2, -1)), size=16,
                                        mode='linear', align_corners=False),
                          size=8, mode='linear', align_corners=False)
    assert (twice - once[0]).abs().max() > 1e-3
    model = _video_model(feat_len=8)
    model._backbone = lambda frames: (slow, fast)
    assert torch.equal(model.run_backbone(torch.zeros(2, 3, 16, 4, 4)), out)


def test_frozen_backbone_norms():
    """Every backbone norm layer stays in eval mode and out of training;
    the rest trains as usual."""
    from re2tal_mm.models.localizer import NORM_LAYERS
    model = _video_model(frozen_backbone_norms=True)
    norms = [m for m in model.backbone.modules()
             if isinstance(m, NORM_LAYERS)]
    assert norms and all(not p.requires_grad for m in norms
                         for p in m.parameters())
    model.train()
    assert all(not m.training for m in norms)
    assert model.neck.training and model.backbone.training
    data = model.data_preprocessor(_video_batch(), True)
    sum(model(**data, mode='loss').values()).backward()
    assert all(p.grad is None for m in norms for p in m.parameters())
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    plain = _video_model()
    plain.train()
    assert all(m.training for m in plain.backbone.modules()
               if isinstance(m, NORM_LAYERS))
    with pytest.raises(ValueError, match='needs a backbone'):
        MODELS.build(dict(
            type='TemporalActionLocalizer', frozen_backbone_norms=True,
            neck=dict(type='ActionFormerNeck', in_channels=6, embed_dims=8,
                      num_levels=1, num_heads=1, window_size=3),
            head=dict(type='ActionFormerHead', num_classes=2, in_channels=8,
                      feat_channels=8, strides=(1, ),
                      regress_ranges=((0, 1e4), ))))


@pytest.mark.parametrize('pool', ['avg', 'max', 'avgmax'])
def test_spatial_pool_options(pool):
    model = _video_model(in_channels=96 if pool == 'avgmax' else 48,
                         spatial_pool=pool)
    x = torch.randn(2, 8, 4, 3, 3)
    out = model._pool(x, 2)
    expected = {'avg': x.mean((-2, -1)), 'max': x.amax((-2, -1))}
    if pool == 'avgmax':
        assert torch.equal(out, torch.cat([expected['avg'],
                                           expected['max']], 1))
    else:
        assert torch.equal(out, expected[pool])
    data = model.data_preprocessor(_video_batch(), True)
    assert torch.isfinite(sum(model(**data, mode='loss').values()))
    with pytest.raises(ValueError, match='spatial_pool'):
        _video_model(spatial_pool='median')


def test_2d_backbone_with_frames_as_batch_trains_rewired():
    """A TSM ResNet sees (B*T, C, H, W); features come back as (B, C, T),
    frame t of sample b in column t (checked against a per-sample run)."""
    from re2tal_mm.rewiring import is_rewired, rewire
    tsm = dict(type='ResNetTSM', depth=18, num_segments=8, pretrained=None,
               norm_eval=False, out_indices=(3, ))
    model = _video_model(in_channels=512, backbone=tsm, frames_as_batch=True)
    model.eval()
    frames = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        feats = model.run_backbone(frames)
        alone = model.run_backbone(frames[1:])
    assert feats.shape == (2, 512, 16)
    assert torch.allclose(feats[1], alone[0], atol=1e-5)
    model.train()
    rewire(model)
    assert is_rewired(model)
    data = model.data_preprocessor(_video_batch(), True)
    total = sum(model(**data, mode='loss').values())
    total.backward()
    assert model.backbone.conv1.conv.weight.grad.abs().sum() > 0
    swin_like = _video_model(in_channels=48)
    with pytest.raises(ValueError, match='no time axis'):
        swin_like._pool(torch.randn(2, 48), 2)


def test_rewired_reversible_equals_autograd():
    torch.manual_seed(0)
    base = _video_model()
    results = []
    for mode in ('autograd', 'reversible'):
        model = copy.deepcopy(base)
        rewiring.rewire(model, mode=mode)
        assert rewiring.is_rewired(model)
        data = model.data_preprocessor(_video_batch(), True)
        total = sum(model(**data, mode='loss').values())
        total.backward()
        results.append((total.detach(), {
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None
        }))
    (l1, g1), (l2, g2) = results
    assert torch.allclose(l1, l2, atol=1e-6)
    assert g1.keys() == g2.keys() and len(g1) > 0
    for n in g1:
        assert torch.allclose(g1[n], g2[n], atol=1e-5, rtol=1e-4), n


def test_engine_train_and_val_step():
    """The runner's entry points: train_step with an OptimWrapper, val_step."""
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    model = _feature_model(3)
    data = dict(inputs=[torch.randn(6, 40),
                        torch.randn(6, 24)],
                data_samples=[_sample(40), _sample(24)])
    for s in data['data_samples']:
        gt = InstanceData()
        gt.segments = torch.tensor([[0.5, 1.5]])
        gt.labels = torch.tensor([2])
        s.gt_instances = gt
    # fully padded attention rows (sample 2) give finite gradients
    losses = model(**model.data_preprocessor(copy.deepcopy(data), True),
                   mode='loss')
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log = model.train_step(copy.deepcopy(data), wrapper)
    assert {'loss', 'loss_cls', 'loss_reg'} <= set(log)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    out = model.val_step(copy.deepcopy(data))
    assert len(out) == 2 and 'pred_instances' in out[1]
    assert float(out[1].pred_instances.segments.max()) <= 2.4 + 1e-5


def test_slowfast_backbone_pathways_concatenated():
    """A real (tiny) SlowFast: pathways pooled, aligned, concatenated."""
    torch.manual_seed(0)
    path = dict(type='resnet3d',
                depth=18,
                pretrained=None,
                conv1_stride_t=1,
                pool1_stride_t=1)
    model = _video_model(in_channels=72,
                         backbone=dict(type='ResNet3dSlowFast',
                                       pretrained=None,
                                       resample_rate=4,
                                       speed_ratio=4,
                                       channel_ratio=8,
                                       slow_pathway=dict(path,
                                                         lateral=True,
                                                         base_channels=8,
                                                         conv1_kernel=(1, 7,
                                                                       7),
                                                         inflate=(0, 0, 1, 1)),
                                       fast_pathway=dict(path,
                                                         lateral=False,
                                                         base_channels=1,
                                                         conv1_kernel=(5, 7,
                                                                       7))))
    data = model.data_preprocessor(_video_batch(), True)
    feats, mask, ratio = model.extract_feat(data['inputs'].flatten(0, 1),
                                            data['data_samples'])
    assert feats.shape == (2, 72, 16) and ratio == 1.0 and bool(mask.all())
    losses = model(**data, mode='loss')
    sum(losses.values()).backward()
    assert model.backbone.slow_path.conv1.conv.weight.grad is not None


def test_empty_ground_truth_and_feat_len_resampling():
    torch.manual_seed(0)
    model = _feature_model(3)
    data = dict(inputs=[torch.randn(6, 40)], data_samples=[_sample(40)])
    gt = InstanceData()
    gt.segments = torch.zeros(0, 2)
    gt.labels = torch.zeros(0, dtype=torch.long)
    data['data_samples'][0].gt_instances = gt
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    assert float(losses['loss_reg']) == 0 and float(losses['loss_cls']) > 0
    video = _video_model(feat_len=12).eval()
    data = video.data_preprocessor(_video_batch())
    feats, mask, ratio = video.extract_feat(data['inputs'],
                                            data['data_samples'])
    assert feats.shape == (2, 48, 12) and ratio == pytest.approx(16 / 12)
    with torch.no_grad():
        out = video(**data, mode='predict')
    assert float(out[0].pred_instances.segments.max()) <= 2.0 + 1e-5

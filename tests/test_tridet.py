"""TriDet: SGP neck and Trident head shapes, the boundary expectation against
a brute-force reference and finite differences, padding invariance, losses
on one batch, feature-mode training on synthetic long videos and one
end-to-end (video mode) step."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.models.tridet_head import expected_distance, neighbour_responses
from re2tal_mm.models.tridet_neck import SGPBlock, sgp_large_kernel
from re2tal_mm.testing import (WIN, C, K, average_precision, make_video,
                               window_sample)

from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample

STRIDES = (1, 2, 4, 8, 16, 32)


pytestmark = pytest.mark.usefixtures('one_thread')


def _neck(**kw):
    cfg = dict(type='TriDetNeck', in_channels=C, embed_dims=32,
               mlp_dims=64, num_groups=4, drop_path=0.0, layer_scale=None)
    return MODELS.build(dict(cfg, **kw))


def _head(**kw):
    cfg = dict(type='TriDetHead', num_classes=K, in_channels=32,
               feat_channels=32, num_bins=16)
    return MODELS.build(dict(cfg, **kw))


def _localizer(neck=None, head=None, **kw):
    return MODELS.build(dict(
        type='TemporalActionLocalizer', neck=neck or dict(
            type='TriDetNeck', in_channels=C, embed_dims=32, mlp_dims=64,
            num_groups=4, drop_path=0.0, layer_scale=None),
        head=head or dict(type='TriDetHead', num_classes=K, in_channels=32,
                          feat_channels=32),
        post_processor=dict(type='TALPostProcessor', score_thr=0.01,
                            nms=dict(method='soft', sigma=0.5,
                                     min_score=0.01, max_num=100)), **kw))


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize('class_aware', [True, False])
def test_every_level_shapes(class_aware):
    torch.manual_seed(0)
    neck, head = _neck(), _head(class_aware_boundaries=class_aware)
    x = torch.randn(2, C, 128)
    mask = torch.arange(128)[None] < torch.tensor([[128], [90]])
    feats, masks = neck(x, mask)
    cls_outs, reg_outs = head(feats, masks)
    kb = K if class_aware else 1
    assert len(feats) == len(masks) == len(cls_outs) == len(reg_outs) == 6
    for lvl, s in enumerate(STRIDES):
        T = 128 // s
        assert feats[lvl].shape == (2, 32, T)
        assert masks[lvl].shape == (2, T) and masks[lvl].dtype == torch.bool
        assert int(masks[lvl][1].sum()) == -(-90 // s)
        assert cls_outs[lvl].shape == (2, T, K)
        assert reg_outs[lvl].shape == (2, T, kb, 2, 17)
        # padded instants are zero features
        assert float(feats[lvl][1][:, ~masks[lvl][1]].detach().abs().sum()) \
            == 0
    assert head.strides == list(STRIDES)
    scores, segs, valid = head.decode(cls_outs, reg_outs, masks)
    P = sum(128 // s for s in STRIDES)
    n = P * K if class_aware else P
    assert scores.shape == (2, n, K) and segs.shape == (2, n, 2)
    assert valid.shape == (2, n) and bool((segs[..., 1] >= segs[..., 0])
                                          .all())


def test_sgp_large_kernel_and_block_shapes():
    assert sgp_large_kernel(1, 5) == 11  # THUMOS-14: w = 1, k = 5
    assert sgp_large_kernel(3, 1.5) == 7  # round(6) made odd
    block = SGPBlock(8, kernel_size=3, k=1.5, num_groups=2, downsample=True)
    assert block.conv_kw.kernel_size == (7, )
    out, mask = block(torch.randn(2, 8, 20), torch.ones(2, 20, dtype=bool))
    assert out.shape == (2, 8, 10) and mask.shape == (2, 10)


# ------------------------------------------------- the boundary expectation
def _brute_force(start, end, off, mask, nb):
    """d_s(t, c) = sum_b b softmax_b(R_s[t - b, c] + C_s[t, b]) over the
    valid t - b (b = 0 always) and the one instant just before the valid
    sequence (response 0), d_e alike with t + b; loops only."""
    B, Kb, T = start.shape
    out = torch.zeros(B, T, Kb, 2, dtype=start.dtype)
    for b in range(B):
        first = int(mask[b].nonzero().min())
        last = int(mask[b].nonzero().max())
        for t in range(T):
            for c in range(Kb):
                for side, (resp, sign) in enumerate(((start, -1),
                                                     (end, 1))):
                    logits, dists = [], []
                    for d in range(nb + 1):
                        u = t + sign * d
                        c_off = off[b, side * (nb + 1) + d, t]
                        if d == 0 or (0 <= u < T and mask[b, u]):
                            logits.append(resp[b, c, u] + c_off)
                        elif u == (first - 1 if sign < 0 else last + 1):
                            logits.append(c_off)  # the virtual instant
                        else:
                            continue
                        dists.append(float(d))
                    p = torch.stack(logits).softmax(0)
                    out[b, t, c, side] = (p * torch.tensor(
                        dists, dtype=p.dtype)).sum()
    return out


def _tiny_inputs(nb, Kb, T=9, dtype=torch.float64):
    g = torch.Generator().manual_seed(4)
    start = torch.randn(2, Kb, T, generator=g, dtype=dtype) * 2
    end = torch.randn(2, Kb, T, generator=g, dtype=dtype) * 2
    off = torch.rand(2, 2 * (nb + 1), T, generator=g, dtype=dtype) * 3
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, 6:] = False
    return start, end, off, mask


@pytest.mark.parametrize('Kb', [1, 2])
def test_boundary_expectation_matches_brute_force(Kb):
    nb = 4
    head = _head(num_classes=2, num_bins=nb,
                 class_aware_boundaries=Kb == 2).double()
    start, end, off, mask = _tiny_inputs(nb, Kb)
    dist = expected_distance(head.boundary_logits(start, end, off, mask))
    ref = _brute_force(start, end, off, mask, nb)
    assert torch.allclose(dist, ref, atol=1e-12)
    # distances reach at most one instant past the valid sequence
    assert bool((dist[1, :, :, 1] <= (6 - torch.arange(9)).clamp(
        min=0)[:, None] + 1e-9).all())
    assert float(dist[:, 0, :, 0].max()) <= 1  # only the instant before 0


def test_boundary_expectation_gradcheck():
    nb = 3
    head = _head(num_classes=2, num_bins=nb).double()
    start, end, off, mask = _tiny_inputs(nb, 2, T=6)

    def f(s, e, o):
        return expected_distance(head.boundary_logits(s, e, o, mask))

    inputs = [t.clone().requires_grad_() for t in (start, end, off)]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)
    # the neighbour windows themselves, -inf (probability 0) included
    s = start.clone().requires_grad_()
    win = neighbour_responses(s, mask, nb, 'start')
    assert win.shape == (2, 6, 2, nb + 1)
    assert torch.equal(win[:, :, :, 0], start.transpose(1, 2))
    assert float(win[:, 0, :, 1].abs().max()) == 0  # the virtual instant
    assert torch.isinf(win[:, 0, :, 2:]).all()


@pytest.mark.parametrize('valid', [8, 6])
def test_boundaries_reach_the_sequence_border(valid):
    """A level's instants sit at 0, s, ..., T - s, the sequence reaches
    T - 0.5 (or T): an action clipped by the window ends up to one stride
    after the last instant (starts half a grid step before the first). With
    the neighbours outside the sequence excluded, the expectation was capped
    at the border instant (the end error of such targets was -(s - 0.5) / s
    strides on trained models: -0.72 at stride 2, -0.75 at stride 4)."""
    nb, T = 4, 8
    head = _head(num_classes=1, num_bins=nb,
                 class_aware_boundaries=False).double()
    mask = (torch.arange(T) < valid)[None]
    last = valid - 1
    # hand-made: every response -30 but the last valid instant's end and the
    # first instant's start (0, the virtual neighbour's response): the
    # expected distance splits evenly between the border instant and the
    # virtual one, whatever the centre offsets of the others
    start = torch.full((1, 1, T), -30., dtype=torch.double)
    end = start.clone()
    end[0, 0, last], start[0, 0, 0] = 0., 0.
    off = torch.zeros(1, 2 * (nb + 1), T, dtype=torch.double)
    dist = expected_distance(head.boundary_logits(start, end, off, mask))
    for t in range(max(0, last - nb + 1), last + 1):
        assert abs(float(dist[0, t, 0, 1]) - (last - t + 0.5)) < 1e-9, t
    for t in range(nb):
        assert abs(float(dist[0, t, 0, 0]) - (t + 0.5)) < 1e-9, t
    # a centre offset in favour of the virtual bin pushes it further out
    # (0.75: a clipped end at stride 4); never past the virtual instant
    off[0, nb + 1 + 1, last] = float(np.log(3.))
    dist = expected_distance(head.boundary_logits(start, end, off, mask))
    assert abs(float(dist[0, last, 0, 1]) - 0.75) < 1e-9
    off[0, nb + 1 + 2, last] = 50.  # bin 2: outside, excluded
    dist = expected_distance(head.boundary_logits(start, end, off, mask))
    assert abs(float(dist[0, last, 0, 1]) - 0.75) < 1e-9


def test_head_gradients_are_finite_and_reach_every_branch():
    torch.manual_seed(0)
    neck, head = _neck(), _head()
    x = torch.randn(2, C, 64)
    mask = torch.arange(64)[None] < torch.tensor([[64], [40]])
    feats, masks = neck(x, mask)
    losses = head.loss(*head(feats, masks), masks,
                       [torch.tensor([[3., 9.], [20., 45.]]),
                        torch.tensor([[1.5, 6.]])],
                       [torch.tensor([0, 2]), torch.tensor([1])])
    sum(losses.values()).backward()
    for name, p in list(neck.named_parameters()) + list(
            head.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for branch in ('start_branch', 'end_branch', 'reg_out', 'cls_out'):
        grads = [p.grad.abs().sum() for n, p in head.named_parameters()
                 if n.startswith(branch)]
        assert sum(grads) > 0, branch


def test_negative_center_offset_scores_still_get_gradient():
    """The center-offset scores are logits: one that is negative everywhere
    (here start bin 0) must keep its gradient (a ReLU on them kills the bin
    for good: starts under one stride away then decode a stride early)."""
    torch.manual_seed(0)
    neck, head = _neck(), _head()
    head.reg_out.weight.data[0].zero_()
    head.reg_out.bias.data[0] = -1.  # start bin 0: score -1 everywhere
    x = torch.randn(1, C, 64)
    mask = torch.ones(1, 64, dtype=torch.bool)
    feats, masks = neck(x, mask)
    cls_outs, reg_outs = head(feats, masks)
    losses = head.loss(cls_outs, reg_outs, masks,
                       [torch.tensor([[3.5, 12.]])], [torch.tensor([1])])
    losses['loss_reg'].backward()
    assert abs(float(head.reg_out.bias.grad[0])) > 1e-6
    assert float(head.reg_out.weight.grad[0].abs().sum()) > 0


def test_boundary_branches_do_not_backpropagate_into_the_neck():
    torch.manual_seed(0)
    head = _head()
    feats = [torch.randn(1, 32, 16 // s, requires_grad=True)
             for s in (1, 2, 4, 8, 16)] + [torch.randn(1, 32, 1)]
    masks = [torch.ones(1, f.shape[-1], dtype=torch.bool) for f in feats]
    head.scales[0].scale.data.zero_()  # no center-offset path at level 0
    _, reg_outs = head(feats, masks)
    reg_outs[0].logsumexp(-1).sum().backward()
    assert feats[0].grad is None or float(feats[0].grad.abs().sum()) == 0
    assert head.start_branch['out'].weight.grad.abs().sum() > 0


def test_zero_init_leaves_sgp_branches_without_gradient():
    """The published THUMOS-14 init (init_conv_vars=0): both gated products
    start at zero and get no gradient; the default init trains them."""
    for init_std, trained in ((0., False), (None, True)):
        torch.manual_seed(0)
        block = SGPBlock(8, kernel_size=1, k=5, num_groups=2,
                         init_std=init_std)
        out, _ = block(torch.randn(2, 8, 12), torch.ones(2, 12, dtype=bool))
        out.square().sum().backward()
        for conv in (block.fc, block.global_fc, block.psi, block.conv_w,
                     block.conv_kw):
            assert (conv.weight.grad.abs().sum() > 0) == trained


def test_default_neck_sgp_products_start_without_constant_terms():
    """TriDetNeck inits its SGP convolutions Gaussian with zero biases (the
    published scheme): zero features get a zero SGP mixing, no per-channel
    constant that every block would add to the residual stream."""
    torch.manual_seed(0)
    neck = _neck()
    zeros, mask = torch.zeros(2, 32, 16), torch.ones(2, 16, dtype=torch.bool)
    for block in list(neck.stem) + list(neck.levels):
        assert float(block.sgp(zeros, mask).abs().max()) == 0
        for conv in (block.fc, block.global_fc, block.psi, block.conv_w,
                     block.conv_kw):
            assert float(conv.bias.abs().max()) == 0
            assert 0.05 < float(conv.weight.std()) < 0.2


# --------------------------------------------------------------- padding
def _sample(n, fps=10.0):
    s = ActionDataSample()
    s.set_metainfo(dict(video_id='v', fps=fps, grid_stride=1,
                        window_offset=0.0, valid_steps=n,
                        window_duration=n / fps))
    return s


@pytest.mark.parametrize('n', [50, 64])
def test_outputs_unchanged_when_longer_sample_is_batched(n):
    torch.manual_seed(0)
    model = _localizer().eval()
    a, b = torch.randn(C, n), torch.randn(C, 157)
    with torch.no_grad():
        alone = model.data_preprocessor(
            dict(inputs=[a], data_samples=[_sample(n)]))
        both = model.data_preprocessor(
            dict(inputs=[a, b], data_samples=[_sample(n), _sample(157)]))
        c1, r1, m1, _ = model(**alone, mode='tensor')
        c2, r2, m2, _ = model(**both, mode='tensor')
        for lvl in range(6):
            v = int(m1[lvl][0].sum())
            assert v == -(-n // 2**lvl) == int(m2[lvl][0].sum())
            assert torch.allclose(c1[lvl][0, :v], c2[lvl][0, :v], atol=1e-5)
            assert torch.allclose(r1[lvl][0, :v], r2[lvl][0, :v], atol=1e-4)
        p1 = model(**alone, mode='predict')[0].pred_instances
        p2 = model(**both, mode='predict')[0].pred_instances
    assert torch.allclose(p1.scores, p2.scores, atol=1e-5)
    assert torch.allclose(p1.segments, p2.segments, atol=1e-4)


# ---------------------------------------------------------------- losses
def _synthetic(seed=0, num_videos=12):
    rng = np.random.default_rng(seed)
    protos = [rng.normal(0, 1, C).astype(np.float32) * 1.5 for _ in range(K)]
    return rng, protos, [make_video(rng, 2 * WIN, protos)
                         for _ in range(num_videos)]


def _batch(model, rng, videos, size=4):
    samples = []
    for _ in range(size):
        v = int(rng.integers(len(videos)))
        x, segs, labels = videos[v]
        start = int(rng.integers(0, x.shape[1] - WIN + 1))
        samples.append(window_sample(f'v{v}', x, segs, labels, start, WIN))
    return model.data_preprocessor(
        dict(inputs=[s[0] for s in samples],
             data_samples=[s[1] for s in samples]), True)


def test_losses_finite_and_decreasing_on_one_batch():
    torch.manual_seed(0)
    rng, _, videos = _synthetic()
    model = _localizer()
    data = _batch(model, rng, videos, size=2)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(15):
        losses = model(**data, mode='loss')
        assert set(losses) == {'loss_cls', 'loss_reg'}
        assert all(torch.isfinite(v) for v in losses.values())
        history.append({k: v.item() for k, v in losses.items()})
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    for key in ('loss_cls', 'loss_reg'):
        first = np.mean([h[key] for h in history[:3]])
        last = np.mean([h[key] for h in history[-3:]])
        assert last < 0.85 * first, (key, [h[key] for h in history])
    total = np.array([sum(h.values()) for h in history])
    assert (np.diff(total) < 0).mean() >= 0.8, total  # nearly monotone


@pytest.mark.parametrize('class_aware', [True, False])
def test_positive_pairs_and_iou_weights(class_aware):
    head = _head(num_classes=2, class_aware_boundaries=class_aware,
                 iou_weight_power=0.5)
    cls_t = torch.tensor([[[1., 0.], [1., 1.], [0., 0.]]])
    reg_t = torch.tensor([[[1., 1.], [2., 2.], [0., 0.]]])
    pos = torch.tensor([[True, True, False]])
    if class_aware:  # (B, P, K, 2): IoU 1, 0.5 (class 0), 0.75 (class 1)
        dist = torch.tensor([[[[1., 1.], [5., 5.]], [[1., 1.], [2., 1.]],
                              [[3., 3.], [3., 3.]]]])
        ious = [1., .5, .75]
    else:  # one shared distance per instant: IoU 1, 0.5 (both classes)
        dist = torch.tensor([[[[1., 1.]], [[1., 1.]], [[3., 3.]]]])
        ious = [1., .5, .5]
    pred, target, weight = head._pairs(dist, cls_t, reg_t, pos)
    assert target.tolist() == ([[1., 1.], [2., 2.], [2., 2.]] if class_aware
                               else [[1., 1.], [2., 2.]])
    expect = torch.ones(1, 3, 2)
    expect[0, 0, 0], expect[0, 1, 0], expect[0, 1, 1] = (
        torch.tensor(ious)**0.5)
    assert torch.allclose(weight, expect)
    assert len(pred) == len(target)


def test_empty_ground_truth():
    torch.manual_seed(0)
    # an int loss normaliser (as a config may write it) is a float buffer
    model = _localizer(head=dict(type='TriDetHead', num_classes=K,
                                 in_channels=32, feat_channels=32,
                                 init_loss_norm=100))
    s = _sample(64)
    s.gt_instances = InstanceData(segments=torch.zeros(0, 2),
                                  labels=torch.zeros(0, dtype=torch.long))
    data = model.data_preprocessor(
        dict(inputs=[torch.randn(C, 64)], data_samples=[s]), True)
    losses = model(**data, mode='loss')
    assert float(losses['loss_reg']) == 0 and float(losses['loss_cls']) > 0
    sum(losses.values()).backward()


def test_class_aware_decode_scores_each_candidate_for_its_class():
    torch.manual_seed(0)
    head = _head(num_classes=2)
    feats = [torch.randn(1, 32, 32 // s) for s in STRIDES]
    masks = [torch.ones(1, f.shape[-1], dtype=torch.bool) for f in feats]
    cls_outs, reg_outs = head(feats, masks)
    scores, segs, valid = head.decode(cls_outs, reg_outs, masks)
    probs = torch.cat(cls_outs, 1).sigmoid()  # (1, P, 2)
    assert torch.equal(scores[0, 0::2, 0], probs[0, :, 0])
    assert torch.equal(scores[0, 1::2, 1], probs[0, :, 1])
    assert float(scores[0, 0::2, 1].abs().sum()) == 0
    dist = head.distances(reg_outs)[0]  # (P, 2, 2) in strides
    points = head.points(masks)
    p = 40  # a level-1 instant (stride 2, position 16)
    assert points[p, 0] == 16 and points[p, 3] == 2
    expect = torch.stack([16 - 2 * dist[p, 1, 0], 16 + 2 * dist[p, 1, 1]])
    assert torch.allclose(segs[0, 2 * p + 1], expect)


# -------------------------------------------------------------- training
def test_feature_mode_training_reaches_map():
    """40 iterations on the long-video set of ``test_localizer``; held-out
    windows. (TriDet against ActionFormer over more iterations and tIoUs:
    ``tools/analysis/compare_heads.py``.)"""
    torch.manual_seed(0)
    rng, protos, videos = _synthetic()
    model = _localizer()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    for _ in range(40):
        loss = sum(model(**_batch(model, rng, videos), mode='loss').values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    rng = np.random.default_rng(1)
    preds, gts = [], []
    for v in range(6):  # held-out windows
        x, segs, labels = make_video(rng, WIN, protos)
        feat, s = window_sample(f't{v}', x, segs, labels, 0, WIN)
        with torch.no_grad():
            (out, ) = model(**model.data_preprocessor(
                dict(inputs=[feat], data_samples=[s])), mode='predict')
        p = out.pred_instances
        preds += [(f't{v}', a.tolist(), int(b), float(c))
                  for a, b, c in zip(p.segments, p.labels, p.scores)]
        gts += [(f't{v}', a.tolist(), int(b)) for a, b in zip(segs, labels)]
    m_ap = average_precision(preds, gts, 0.5)
    print(f'\nTriDet mAP@0.5={m_ap:.3f} after 40 iterations')
    assert m_ap >= 0.7


# ------------------------------------------------------------- video mode
def test_end_to_end_video_mode_step_and_predict():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='TemporalActionLocalizer',
        backbone=dict(type='SwinTransformer3D',
                      arch=dict(embed_dims=24, depths=[2, 2],
                                num_heads=[2, 2]),
                      patch_size=(2, 4, 4), window_size=(4, 4, 4),
                      out_indices=(1, ), drop_path_rate=0.0,
                      pretrained=None),
        rewire=dict(mode='reversible'),
        data_preprocessor=dict(type='ActionDataPreprocessor',
                               mean=[128.] * 3, std=[64.] * 3,
                               format_shape='NCTHW'),
        neck=dict(type='TriDetNeck', in_channels=48, embed_dims=16,
                  num_levels=3, mlp_dims=32, num_groups=4),
        head=dict(type='TriDetHead', num_classes=2, in_channels=16,
                  feat_channels=16, strides=(1, 2, 4), num_bins=4,
                  regress_ranges=((0, 2), (2, 4), (4, 1e8)))))
    g = torch.Generator().manual_seed(1)
    inputs, samples = [], []
    for i in range(2):
        inputs.append(torch.randint(0, 256, (1, 3, 16, 32, 32), generator=g,
                                    dtype=torch.uint8))
        s = ActionDataSample()
        s.set_metainfo(dict(video_id=f'v{i}', fps=8.0, window_offset=0.,
                            window_duration=2.0, num_frames=16,
                            duration=2.0))
        s.gt_instances = InstanceData(segments=torch.tensor([[0.25, 1.25]]),
                                      labels=torch.tensor([i]))
        samples.append(s)
    batch = dict(inputs=inputs, data_samples=samples)
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    total = sum(losses.values())
    assert torch.isfinite(total) and float(losses['loss_reg']) > 0
    total.backward()
    grad = model.backbone.patch_embed.proj.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    model.eval()
    with torch.no_grad():
        out = model(**model.data_preprocessor(batch), mode='predict')
    p = out[0].pred_instances
    assert len(p.scores) == len(p.labels) == len(p.segments) > 0
    # predictions are clipped to the video by the per-video merge, after
    # its NMS (TALMetric.merge_video), not in predict
    from re2tal_mm.evaluation import TALMetric
    seg = TALMetric().merge_video(p.segments, p.scores, p.labels, 2.0)[0]
    assert float(seg.min()) >= 0 and float(seg.max()) <= 2.0

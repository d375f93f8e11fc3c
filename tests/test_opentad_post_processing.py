"""OpenTAD post-processing parity (fixtures) and the window merge."""
import math

import numpy as np
import pytest
import torch

from re2tal_mm.apis.opentad.post_processing import (fixture_proposals, nms_cfg,
                                                    post_processing_cfg,
                                                    run_post_processing)
from re2tal_mm.datasets import TALWindowSample, sliding_windows
from re2tal_mm.evaluation import TALMetric
from re2tal_mm.models.post_processing import TALPostProcessor
from re2tal_mm.structures import segment_nms

from .conftest import opentad_fixture


@pytest.mark.parametrize('name', ['actionformer.pth', 'tridet.pth'])
def test_post_processing_equals_opentad(name):
    fixture = opentad_fixture(name)
    ref = fixture['post_processing']
    props, scores = fixture_proposals(fixture)
    ours = run_post_processing(ref['settings'], ref['metas'], props, scores,
                               fixture['class_names'])
    assert len(ours['nms_raw']) == len(ref['nms_raw'])
    for theirs, mine in zip(ref['nms_raw'], ours['nms_raw']):
        for key in ('in_segments', 'in_scores', 'out_segments'):
            assert mine[key].shape == theirs[key].shape, key
            assert torch.equal(mine[key].to(theirs[key]), theirs[key]), key
        # float32 soft-NMS: exp may differ by one unit in the last place
        torch.testing.assert_close(mine['out_scores'], theirs['out_scores'],
                                   rtol=1e-6, atol=0)
        assert torch.equal(mine['in_labels'], theirs['in_labels'])
        assert torch.equal(mine['out_labels'], theirs['out_labels'])
    assert list(ours['results']) == list(ref['results'])
    for vid, theirs in ref['results'].items():
        mine = ours['results'][vid]
        assert [d['label'] for d in mine] == [d['label'] for d in theirs]
        seg = np.array([d['segment'] for d in mine])
        np.testing.assert_allclose(
            seg, np.array([d['segment'] for d in theirs]), atol=0.0100001,
            rtol=0)
        np.testing.assert_allclose([d['score'] for d in mine],
                                   [d['score'] for d in theirs],
                                   atol=1.00001e-4, rtol=0)


def test_default_procedure_agrees_on_the_fixtures():
    """Our greedy NMS (exact tIoU) keeps OpenTAD's segments in its order on
    both fixtures; scores within 2e-8 (1e-6 added to lengths: 1e-9)."""
    for name in ('actionformer.pth', 'tridet.pth'):
        ref = opentad_fixture(name)['post_processing']
        cfg = dict(nms_cfg(ref['settings']['nms']), procedure='greedy',
                   length_eps=0.)
        for raw in ref['nms_raw']:
            s, c, lb = segment_nms(raw['in_segments'], raw['in_scores'],
                                   raw['in_labels'], **cfg)
            assert torch.equal(lb, raw['out_labels'])
            assert torch.equal(s.float(), raw['out_segments'])
            assert (c - raw['out_scores']).abs().max() < 2e-8


def test_post_processing_cfg():
    cfg = post_processing_cfg(dict(nms=dict(
        use_soft_nms=True, sigma=0.7, max_seg_num=2000, min_score=0.001,
        multiclass=True, voting_thresh=0.7)))
    assert cfg['post_processor']['nms'] is None
    assert cfg['metric'] == dict(
        nms=dict(iou_threshold=0.0, min_score=0.001, max_num=2000,
                 sigma=0.7, method='soft', class_agnostic=False,
                 length_eps=1e-6, procedure='opentad'),
        max_per_video=2000, clip='after', round_before_nms=False,
        drop_empty=False)
    anet = post_processing_cfg(dict(sliding_window=True, nms=dict(
        use_soft_nms=True, sigma=0.7, max_seg_num=100, min_score=0.001,
        multiclass=False, voting_thresh=0.9)))['metric']
    assert anet['nms']['voting_thresh'] == 0.9
    assert anet['nms']['class_agnostic'] and anet['clip'] == 'before'
    with pytest.raises(ValueError, match='t3'):
        post_processing_cfg(dict(nms=dict(t3=1)))


def test_opentad_procedure_ties():
    """Equal scores: OpenTAD picks in its swap order, ours in input
    order."""
    segs = torch.tensor([[0., 1.], [5., 6.], [0., 1.1], [9., 10.]])
    scores = torch.tensor([0.5, 0.9, 0.5, 0.8])
    labels = torch.zeros(4, dtype=torch.long)
    kw = dict(method='soft', sigma=0.5, min_score=0.001, max_num=10)
    decayed = 0.5 * math.exp(-(1 / 1.1)**2 / 0.5)
    s, c, _ = segment_nms(segs, scores, labels, **kw)
    assert s[2:, 1].tolist() == pytest.approx([1., 1.1])
    assert c[3] == pytest.approx(decayed)
    # picks 1 and swaps it to the front ([1, 0, 2, 3]), then 3, swapped
    # with position 1 ([1, 3, 2, 0]): of the tied 0 and 2, 2 comes first
    s, c, _ = segment_nms(segs, scores, labels, procedure='opentad', **kw)
    assert s[2:, 1].tolist() == pytest.approx([1.1, 1.])
    assert c[3] == pytest.approx(decayed)
    with pytest.raises(ValueError, match='procedure'):
        segment_nms(segs, scores, labels, procedure='other')


def test_length_eps_and_voting():
    segs = torch.tensor([[0., 2.], [1., 3.]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    labels = torch.zeros(2, dtype=torch.long)
    _, exact, _ = segment_nms(segs, scores, labels, sigma=0.5)
    _, eps, _ = segment_nms(segs, scores, labels, sigma=0.5, length_eps=1.)
    assert exact[1] == pytest.approx(0.8 * math.exp(-(1 / 3)**2 / 0.5))
    assert eps[1] == pytest.approx(0.8 * math.exp(-(1 / 5)**2 / 0.5))
    s, _, _ = segment_nms(segs, scores, labels, class_agnostic=True,
                          method='hard', iou_threshold=0.5,
                          voting_thresh=0.3)
    assert s[0].tolist() == pytest.approx([0.8 / 1.7, 2 + 0.8 / 1.7])


def _window(vid, segs, scores, labels, duration):
    return dict(video_id=vid, duration=duration,
                segments=np.asarray(segs, np.float64).reshape(-1, 2),
                scores=np.asarray(scores, np.float64),
                labels=np.asarray(labels, np.int64))


def test_one_nms_over_merged_windows():
    """Two windows each holding an overlapping pair: through the default
    post-processor (no NMS) and the metric, every score decays once, by the
    segments of all windows together."""
    pp = TALPostProcessor()
    metric = TALMetric(nms=dict(method='soft', sigma=0.5, min_score=1e-3))
    windows = [([[0., 4.], [1., 4.]], [0.9, 0.8]),
               ([[2., 4.], [10., 12.]], [0.7, 0.6])]
    for segs, sc in windows:
        scores = torch.tensor(sc)[:, None]
        out = pp(scores, torch.tensor(segs))
        assert out.scores.tolist() == pytest.approx(sc)  # not decayed
        metric.results.append(_window('v', out.segments.numpy(),
                                      out.scores.numpy(),
                                      out.labels.numpy(), 20.))
    merged = metric.merge_predictions(metric.results, ['a'])['v']
    g = lambda iou: math.exp(-iou**2 / 0.5)  # noqa: E731
    # [0, 4] decays [1, 4] (tIoU 3/4) and [2, 4] (2/4); [2, 4] then [1, 4]
    expected = [0.9, 0.6, 0.7 * g(2 / 4), 0.8 * g(3 / 4) * g(2 / 3)]
    assert [d['score'] for d in merged] == pytest.approx(expected)


def test_clip_after_nms():
    """tIoU of the unclipped segments (1/3), then clipped to the video."""
    metric = TALMetric(nms=dict(method='soft', sigma=0.5, min_score=1e-3))
    metric.results.append(_window('v', [[8., 14.], [9., 11.]], [0.9, 0.8],
                                  [0, 0], 10.))
    merged = metric.merge_predictions(metric.results, ['a'])['v']
    assert merged[0]['segment'] == [8., 10.]
    assert merged[1]['segment'] == [9., 10.]
    assert merged[1]['score'] == pytest.approx(
        0.8 * math.exp(-(1 / 3)**2 / 0.5))
    metric.clip = 'before'  # OpenTAD's sliding-window order: tIoU 1/2
    merged = metric.merge_predictions(metric.results, ['a'])['v']
    assert merged[1]['score'] == pytest.approx(
        0.8 * math.exp(-(1 / 2)**2 / 0.5))
    with pytest.raises(ValueError, match='clip'):
        TALMetric(clip='later')


@pytest.mark.parametrize('fps', [29.97, 30.0])
def test_test_windows_on_the_frame_grid(fps):
    """Window starts at i * 512 steps of 2 frames whatever the fps, the
    last ending at the video's last step (OpenTAD's placement)."""
    total_frames = int(300.3 * fps)
    duration = total_frames / fps
    sample = TALWindowSample(num_steps=1024, frame_stride=2, test_mode=True)
    starts = []
    for win in sliding_windows(math.ceil(total_frames / 2), 1024, 0.5):
        res = sample(dict(win, total_frames=total_frames, avg_fps=fps,
                          duration=duration, test_mode=True,
                          gt_segments=np.zeros((0, 2), np.float32),
                          gt_labels=np.zeros(0, np.int64)))
        starts.append(int(res['frame_inds'][0]))
        assert res['window_offset'] == pytest.approx(starts[-1] / fps)
    steps = math.ceil(total_frames / 2)
    assert starts[:-1] == [i * 1024 for i in range(len(starts) - 1)]
    assert starts[-1] == (steps - 1024) * 2
    assert starts[-2] + 2048 < total_frames <= starts[-1] + 2048


def test_training_window_options():
    np.random.seed(0)
    gt = np.array([[1.0, 3.0], [5.0, 9.0]], np.float32)
    base = dict(total_frames=300, avg_fps=30., duration=10.,
                gt_segments=gt, gt_labels=np.array([0, 1]))
    # a short video (150 steps) cropped to 135..150 steps, then padded
    crop = TALWindowSample(num_steps=256, frame_stride=2,
                           crop_ratio=(0.9, 1.0))
    valid = {crop(dict(base))['valid_steps'] for _ in range(30)}
    assert min(valid) >= 135 and max(valid) <= 150 and len(valid) > 1
    whole = TALWindowSample(num_steps=256, frame_stride=2)
    assert whole(dict(base))['valid_steps'] == 150
    # only actions held at least min_action_ratio stay
    strict = TALWindowSample(num_steps=60, frame_stride=2,
                             min_action_ratio=0.75, partial_actions=False)
    for _ in range(20):
        res = strict(dict(base))
        lo = res['window_offset']
        hi = lo + res['window_duration']
        held = (np.minimum(gt[:, 1], hi) - np.maximum(gt[:, 0], lo)) / (
            gt[:, 1] - gt[:, 0])
        assert len(res['gt_segments']) == (held >= 0.75).sum()

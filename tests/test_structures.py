import numpy as np
import pytest
import torch

from re2tal_mm.structures import TemporalGrid, pairwise_tiou, segment_nms


def test_grid_round_trip_and_values():
    grid = TemporalGrid(fps=25.0, stride=4, offset=10.0, center=0.5)
    assert grid.step == pytest.approx(0.16)
    seconds = torch.tensor([10.0, 10.08, 13.3])
    assert torch.allclose(grid.to_seconds(grid.to_grid(seconds)), seconds)
    assert grid.to_seconds(0) == pytest.approx(10.08)  # middle of cell 0
    at = grid.to_grid(torch.tensor(10.08 + 0.16 * 3))
    assert float(at) == pytest.approx(3)


def test_tiou_numpy_matches_torch_and_hand_values():
    a = np.array([[0., 10.], [5., 6.], [3., 3.]])
    b = np.array([[5., 15.], [0., 10.]])
    expected = np.array([[5 / 15, 1.], [0.1, 0.1], [0., 0.]])
    np.testing.assert_allclose(pairwise_tiou(a, b), expected)
    np.testing.assert_allclose(
        pairwise_tiou(torch.from_numpy(a), torch.from_numpy(b)).numpy(),
        expected)


def test_nms_keeps_best_and_respects_labels():
    segs = torch.tensor([[0., 10.], [1., 10.], [0., 10.], [20., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    s, sc, lb = segment_nms(segs, scores, labels, iou_threshold=0.5,
                            method='hard')
    assert lb.tolist() == [0, 1, 0] and torch.allclose(sc, scores[[0, 2, 3]])
    s, sc, lb = segment_nms(segs, scores, labels, method='hard',
                            class_agnostic=True)
    assert torch.equal(s, segs[[0, 3]])
    s, sc, lb = segment_nms(segs, scores, labels, method='soft', sigma=0.5)
    assert sc[0] == pytest.approx(0.9)
    decayed = 0.8 * float(np.exp(-0.9**2 / 0.5))
    assert sorted(sc.tolist())[0] == pytest.approx(decayed)
    with pytest.raises(ValueError, match='soft'):
        segment_nms(segs, scores, labels, method='linear')


def matrix_nms(segments, scores, labels, iou_threshold=0.5, method='soft',
               sigma=0.5, min_score=1e-3, max_num=200, class_agnostic=False):
    """The textbook form: the whole N x N tIoU matrix up front."""
    scores = scores.clone().float()
    alive = scores >= min_score
    iou = pairwise_tiou(segments.float(), segments.float())
    if not class_agnostic:
        iou = iou * (labels[:, None] == labels[None, :])
    keep, kept = [], []
    while len(keep) < max_num and bool(alive.any()):
        i = int(torch.where(alive, scores, torch.full_like(scores, -1.)
                            ).argmax())
        keep.append(i)
        kept.append(float(scores[i]))
        alive[i] = False
        if method == 'hard':
            alive &= iou[i] < iou_threshold
        else:
            scores = scores * torch.exp(-iou[i]**2 / sigma)
            alive &= scores >= min_score
    return keep, kept


def test_nms_row_by_row_equals_the_matrix_form():
    gen = torch.Generator().manual_seed(0)
    for case in range(30):
        n = 5 + case * 7
        start = torch.rand(n, generator=gen) * 100
        segs = torch.stack([start, start + torch.rand(
            n, generator=gen) * 20 + 0.1], 1)
        scores = (torch.rand(n, generator=gen) * 10).round() / 10  # ties
        labels = torch.randint(0, 3, (n, ), generator=gen)
        for kw in (dict(method='soft'), dict(method='hard'),
                   dict(method='soft', class_agnostic=True),
                   dict(method='hard', max_num=5)):
            s, sc, lb = segment_nms(segs, scores, labels, **kw)
            keep, kept = matrix_nms(segs, scores, labels, **kw)
            assert torch.equal(s, segs[keep]) and torch.equal(
                lb, labels[keep])
            assert sc.tolist() == kept

"""The synthetic THUMOS-14 layouts of ``tools/analysis/compare_heads.py``
(where TriDet is compared with ActionFormer): features on the published
clip grid, read back through the grid the samples declare."""
import importlib.util
import os.path as osp

import numpy as np
import pytest

from re2tal_mm.structures import TemporalGrid

from .conftest import REPO, SHARED_DATA, shared_path

TOOL = osp.join(REPO, 'tools', 'analysis', 'compare_heads.py')
THUMOS = osp.join(SHARED_DATA, 'thumos-14')


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('compare_heads', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clip_features_ramp_over_the_clips_the_grid_declares(tool):
    """Noise-free features of one segment: the response of step ``i`` is the
    share of its clip inside the segment, where the clip is the 16 frames
    around the instant the grid of the samples maps ``i`` to."""
    fps = 30.
    info = dict(duration=10., fps=fps, ambiguous=[],
                annotations=[dict(segment=[2.0, 5.03], label='b')])
    protos = np.random.default_rng(0).normal(0, 1, (2, 8))
    x, segs, labels = tool.render_clip_features(
        np.random.default_rng(1), info, protos, ['a', 'b'], noise=0.)
    assert x.shape == (8, (300 - 16) // 4 + 1) and labels.tolist() == [1]
    resp = (x - x[:, :1]).T @ protos[1] / (protos[1] @ protos[1])
    grid = TemporalGrid(fps=fps, stride=tool.THUMOS_STRIDE,
                        center=tool.THUMOS_CENTER)
    middle = grid.to_seconds(np.arange(x.shape[1]))
    half = tool.THUMOS_CLIP / 2 / fps
    lo, hi = 60 / fps, 151 / fps  # the frames the segment covers
    share = (np.clip(middle + half, lo, hi) - np.clip(middle - half, lo, hi)
             ) / (2 * half)
    assert np.isclose(share.max(), 1) and share[0] == 0 and 0 < share[14] < 1
    np.testing.assert_allclose(resp / resp.max(), share, atol=1e-5)


def test_thumos_layouts_train_on_validation_and_score_test_videos(tool):
    data = tool.ThumosLayouts(0, 1.0, 0.6, 4, shared_path(THUMOS))
    assert len(data.classes) == 20 and 'Ambiguous' not in data.classes
    assert len(data.train) == 200 and len(data.test) == 210
    feat, sample = data.train_sample(np.random.default_rng(0))
    meta = sample.metainfo
    assert feat.shape[0] == 4 and feat.shape[1] <= tool.THUMOS_WIN
    lo = meta['window_offset']
    segs = sample.gt_instances.segments.numpy()
    assert len(segs) and lo <= segs.min() and segs.max() <= (
        lo + meta['window_duration'])
    vid, (x, _, _) = data.test[0]
    info = data.db[vid]
    frames = int(round(info['duration'] * info['fps']))
    assert x.shape[1] == (frames - 16) // 4 + 1

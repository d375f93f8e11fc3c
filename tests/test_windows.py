"""Sliding test windows on each video's own frame grid, at any fps."""
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from re2tal_mm.datasets import (LoadTALFeature, TALWindowSample, video_windows,
                                window_starts)
from re2tal_mm.datasets.synthetic import write_h264

from mmaction.registry import DATASETS
from mmaction.structures import ActionDataSample

FPS_CASES = [25, Fraction(30000, 1001), 30, Fraction(60000, 1001)]


@pytest.fixture(autouse=True)
def mmaction_scope():
    init_default_scope('mmaction')


def sampled_windows(total_frames, fps, num_steps, stride, overlap,
                    count='cover'):
    """The samples ``TALWindowSample`` makes of the windows of a video."""
    sampler = TALWindowSample(num_steps, frame_stride=stride, test_mode=True)
    meta = dict(filename='v.mp4', total_frames=total_frames,
                avg_fps=float(fps), duration=total_frames / float(fps))
    out = []
    for win in video_windows(meta, [sampler], overlap, count):
        out.append(sampler(dict(meta, **win, test_mode=True,
                                gt_segments=np.zeros((0, 2), np.float32),
                                gt_labels=np.zeros(0, np.int64))))
    return out


@pytest.mark.parametrize('overlap', [0.25, 0.5])
@pytest.mark.parametrize('fps', FPS_CASES, ids=str)
def test_windows_on_the_frame_grid(fps, overlap):
    n, stride = 256, 2
    total_frames = int(301.37 * fps)  # a video of about 5 min
    steps = math.ceil(total_frames / stride)
    wins = sampled_windows(total_frames, fps, n, stride, overlap)
    starts = [int(w['frame_inds'][0]) for w in wins]
    hop = int(n * (1 - overlap))
    # on the grid: window i at i * hop steps of `stride` frames, the last
    # ending at the video's last step
    assert starts[:-1] == [i * hop * stride for i in range(len(wins) - 1)]
    assert starts[-1] == (steps - n) * stride
    assert len(wins) == math.ceil((steps - n) / hop) + 1
    assert starts == sorted(set(starts))  # no duplicate
    covered = set()
    for w, start in zip(wins, starts):
        inds = w['frame_inds']
        assert w['valid_steps'] == n
        assert (inds == start + stride * np.arange(n)).all()
        assert w['window_offset'] == pytest.approx(start / float(fps))
        assert w['window_duration'] == pytest.approx(n * stride / float(fps))
        covered |= set(inds.tolist())
    assert covered == set(range(0, total_frames, stride))  # whole video
    assert wins[-1]['frame_inds'][-1] == (steps - 1) * stride


def test_short_video_one_window():
    (win, ) = sampled_windows(100, 29.97, 256, 2, 0.5)
    assert win['frame_inds'][0] == 0 and win['valid_steps'] == 50
    assert window_starts(256, 256, 0.5) == [0]
    assert window_starts(256, 256, 0.5, 'opentad') == [0, 0]


def opentad_frame_starts(total_frames, fps, overlap):
    return [int(w['frame_inds'][0]) for w in sampled_windows(
        total_frames, fps, 256, 4, overlap, count='opentad')]


def test_opentad_windows_by_hand():
    """OpenTAD's SlidingWindowDataset, window_size 256 snippets of 4 frames
    (its THUMOS e2e_sw_256x224x224 recipe), worked out by hand.

    snippets = len(arange(0, frames, 4)); stride = int(256 * (1 -
    overlap)); for idx in range(max(1, snippets // stride)): start = idx *
    stride, and the first window past the end is moved back to end there
    and is the last one.
    """
    # 5350 frames (178.5 s at 29.97 fps): 1338 snippets. Overlap 0.5
    # (its test): stride 128, 10 tries, idx 9 passes the end: 1338 - 256
    theirs = [0, 128, 256, 384, 512, 640, 768, 896, 1024, 1082]
    assert window_starts(1338, 256, 0.5, 'opentad') == theirs
    assert window_starts(1338, 256, 0.5) == theirs  # ours the same
    assert opentad_frame_starts(5350, Fraction(30000, 1001), 0.5) == [
        4 * s for s in theirs]
    # overlap 0.25 (its default): stride 192, 1338 // 192 = 6 tries, none
    # passes the end: the tail 1216..1338 has no window in OpenTAD
    theirs = [0, 192, 384, 576, 768, 960]
    assert window_starts(1338, 256, 0.25, 'opentad') == theirs
    assert window_starts(1338, 256, 0.25) == theirs + [1082]
    assert opentad_frame_starts(5350, Fraction(30000, 1001), 0.25) == [
        4 * s for s in theirs]
    # 5120 frames (204.8 s at 25 fps): 1280 snippets, overlap 0.5: idx 8
    # ends at 1280 exactly (kept), idx 9 passes it and is moved back onto
    # idx 8: OpenTAD tests that window twice
    theirs = [128 * i for i in range(9)] + [1024]
    assert window_starts(1280, 256, 0.5, 'opentad') == theirs
    assert window_starts(1280, 256, 0.5) == theirs[:-1]
    assert opentad_frame_starts(5120, 25, 0.5) == [4 * s for s in theirs]


def test_cover_never_repeats_nor_leaves_a_gap():
    n = 64
    for steps in range(1, 400, 7):
        for overlap in (0.0, 0.25, 0.5, 0.75):
            starts = window_starts(steps, n, overlap)
            assert starts == sorted(set(starts))
            assert starts[-1] == max(0, steps - n)
            gaps = np.diff([0] + starts)
            assert (gaps <= n).all()


def test_window_options_are_checked():
    with pytest.raises(ValueError, match='window_count'):
        window_starts(100, 10, 0.5, 'seconds')
    with pytest.raises(ValueError, match='window_overlap'):
        window_starts(100, 10, 1.0)
    with pytest.raises(ValueError, match='TALWindowSample'):
        video_windows(dict(total_frames=10, avg_fps=30.), [], 0.5)
    resize = TALWindowSample(16, mode='resize')
    with pytest.raises(ValueError, match="mode='window'"):
        video_windows(dict(total_frames=10, avg_fps=30.), [resize], 0.5)


def test_video_of_another_length_than_counted(tmp_path):
    """A window counted for another length (header unreadable then): a
    warning naming the file; the window that ended at the end still does."""
    log = tmp_path / 'w.log'
    MMLogger.get_instance('test_windows_length', log_file=str(log))
    sampler = TALWindowSample(16, frame_stride=1, test_mode=True)
    base = dict(filename='v.mp4', total_frames=100, avg_fps=25.,
                duration=4., test_mode=True,
                gt_segments=np.zeros((0, 2), np.float32),
                gt_labels=np.zeros(0, np.int64))
    wins = video_windows(dict(base, total_frames=90), [sampler], 0.5)
    starts = [int(sampler(dict(base, **w))['frame_inds'][0]) for w in wins]
    assert starts[:-1] == [8 * i for i in range(len(wins) - 1)]
    assert starts[-1] == 100 - 16
    assert 'v.mp4: its test windows were counted for 90 steps but it has ' \
        '100' in log.read_text()


def test_localize_video_window_options(tmp_path):
    from re2tal_mm.apis.inference import _window_options
    log = tmp_path / 'w.log'
    MMLogger.get_instance('test_windows_options', log_file=str(log))
    old = Config(dict(window_duration=4.0, window_overlap=0.5))
    assert _window_options(old, None, None, None, None) == (
        True, 0.5, 'cover')
    new = Config(dict(sliding_window=False, window_duration=4.0,
                      window_count='opentad'))
    assert _window_options(new, None, None, None, None) == (
        False, 0.25, 'opentad')
    assert 'deprecated' not in log.read_text()
    assert _window_options(new, None, 4.0, 0.1, 'cover') == (
        True, 0.1, 'cover')
    assert 'localize_video(window_duration=...) is deprecated' in \
        log.read_text()
    assert _window_options(new, False, 4.0, None, None)[0] is False


# ----------------------------------------------------------------------
# the dataset and localize_video, on real files

NUM_STEPS, STRIDE = 32, 2


def pipeline():
    return [dict(type='TALVideoInit'),
            dict(type='TALWindowSample', num_steps=NUM_STEPS,
                 frame_stride=STRIDE, test_mode=True),
            dict(type='TALVideoDecode'),
            dict(type='FormatShape', input_format='NCTHW'),
            dict(type='PackTALInputs')]


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """Two videos: 29.97 fps (373 frames) and 25 fps (311 frames), and an
    annotation with rounded durations and fps as THUMOS files have."""
    root = tmp_path_factory.mktemp('windows')
    db = {}
    for vid, fps, frames in (('ntsc', Fraction(30000, 1001), 373),
                             ('pal', Fraction(25), 311)):
        rng = np.random.default_rng(frames)
        write_h264(root / f'{vid}.mp4',
                   (rng.integers(0, 255, (48, 64, 3), np.uint8)
                    for _ in range(frames)), fps)
        db[vid] = dict(subset='test', fps=round(float(fps), 2),
                       duration=round(frames / float(fps), 1),
                       annotations=[dict(segment=[1.0, 2.0], label='a')])
    ann = root / 'ann.json'
    ann.write_text(json.dumps(dict(database=db)))
    return root


def build(root, **kw):
    cfg = dict(type='TALDataset', ann_file=str(root / 'ann.json'),
               classes=['a'], data_prefix=dict(video=str(root)),
               test_mode=True, window_overlap=0.5, pipeline=pipeline())
    cfg.update(kw)
    return DATASETS.build(cfg)


def frame_starts(ds, vid):
    out = []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        if info['video_id'] == vid:
            res = ds.pipeline.transforms[1](ds.pipeline.transforms[0](
                dict(info)))
            out.append(int(res['frame_inds'][0]))
    return out


@pytest.mark.parametrize('vid,frames', [('ntsc', 373), ('pal', 311)])
def test_dataset_windows_on_the_video_grid(videos, vid, frames):
    ds = build(videos, sliding_window=True)
    steps = math.ceil(frames / STRIDE)
    expected = [STRIDE * s for s in window_starts(steps, NUM_STEPS, 0.5)]
    assert frame_starts(ds, vid) == expected
    assert expected[-1] + STRIDE * (NUM_STEPS - 1) == STRIDE * (steps - 1)


def test_deprecated_window_duration_counted_on_the_grid(videos, tmp_path):
    """A THUMOS config's window for 30 fps on a 25 fps video: before, the
    count in seconds gave surplus windows, clamped onto the last."""
    log = tmp_path / 'w.log'
    MMLogger.get_instance('test_windows_deprecated', log_file=str(log))
    w = NUM_STEPS * STRIDE / 30
    old = build(videos, window_duration=w)
    assert 'window_duration=2.1333' in log.read_text()
    assert 'sliding_window=True' in log.read_text()
    starts = frame_starts(old, 'pal')
    assert starts == frame_starts(build(videos, sliding_window=True), 'pal')
    assert starts == sorted(set(starts))
    # the count in seconds, ceil((D - W) / (W / 2)) + 1 of the annotation's
    # duration (12.4 s), made two windows too many, repeating the last
    assert math.ceil((12.4 - w) / (w / 2)) + 1 == len(starts) + 2
    # sliding_window given wins over window_duration
    assert len(build(videos, window_duration=w, sliding_window=False)) == 2


def test_unreadable_header_named(videos, tmp_path):
    for name in ('ntsc', 'pal'):
        (tmp_path / f'{name}.mp4').write_bytes(b'not a video')
    db = json.loads((videos / 'ann.json').read_text())
    del db['database']['pal']['fps']
    (tmp_path / 'ann.json').write_text(json.dumps(db))
    log = tmp_path / 'w.log'
    MMLogger.get_instance('test_windows_unreadable', log_file=str(log))
    ds = build(tmp_path)
    assert len(ds) == 2  # no windows asked for: no header read
    ds = build(tmp_path, sliding_window=True)
    text = log.read_text()
    assert 'video ntsc' in text and 'counted from its annotation' in text
    assert 'video pal' in text and 'fps is unknown' in text
    vids = [ds.get_data_info(i)['video_id'] for i in range(len(ds))]
    # ntsc: 12.4 s x 29.97 fps = 372 frames, 186 steps, from annotation
    assert vids.count('ntsc') == len(window_starts(186, NUM_STEPS, 0.5))
    assert vids.count('pal') == 1


class RecordingModel(torch.nn.Module):
    """Records what each window sample holds; predicts nothing."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.dataset_meta = dict(classes=['a'])
        self.seen = []

    def test_step(self, batch):
        out = []
        for inputs, sample in zip(batch['inputs'], batch['data_samples']):
            meta = sample.metainfo
            self.seen.append((meta['window_offset'], meta['valid_steps'],
                              inputs.float().mean().item()))
            pred = ActionDataSample(metainfo=meta)
            pred.pred_instances = InstanceData(
                segments=torch.zeros(0, 2), scores=torch.zeros(0),
                labels=torch.zeros(0, dtype=torch.long))
            out.append(pred)
        return out


@pytest.mark.parametrize('count', ['cover', 'opentad'])
def test_localize_video_gives_the_dataset_windows(videos, count):
    from mmengine.dataset import pseudo_collate

    from re2tal_mm.apis import localize_video
    ds = build(videos, sliding_window=True, window_count=count)
    cfg = Config(dict(test_dataloader=dict(dataset=dict(
        sliding_window=True, window_overlap=0.5, window_count=count,
        pipeline=pipeline())), test_evaluator=dict(type='TALMetric')))
    for vid in ('ntsc', 'pal'):
        model = RecordingModel(cfg)
        result = localize_video(model, str(videos / f'{vid}.mp4'),
                                progress=False)
        assert result['results'] == []
        got = model.seen
        model.seen = []
        for i in range(len(ds)):
            if ds.get_data_info(i)['video_id'] == vid:
                model.test_step(pseudo_collate([ds[i]]))
        assert len(got) > 3 and got == model.seen


def test_feature_windows_in_feature_steps(tmp_path, monkeypatch):
    """Features: the windows count feature steps (the .npy header only is
    read to count them), whatever the fps."""
    lengths = dict(f0=100, f1=131)
    db = {}
    for vid, steps in lengths.items():
        np.save(tmp_path / f'{vid}.npy', np.ones((steps, 3), np.float32))
        db[vid] = dict(subset='test', fps=29.97, duration=steps * 8 / 29.97,
                       annotations=[])
    (tmp_path / 'ann.json').write_text(json.dumps(dict(database=db)))
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, 'load', lambda *a, **k: loads.append(k) or
                        real_load(*a, **k))
    ds = DATASETS.build(dict(
        type='TALDataset', ann_file=str(tmp_path / 'ann.json'),
        classes=['a'], modality='Feature', test_mode=True,
        data_prefix=dict(feature=str(tmp_path)), sliding_window=True,
        window_overlap=0.25,
        pipeline=[dict(type='LoadTALFeature', feature_stride=8),
                  dict(type='TALWindowSample', num_steps=32,
                       test_mode=True),
                  dict(type='PackTALInputs')]))
    assert loads and all(k.get('mmap_mode') == 'r' for k in loads)
    for vid, steps in lengths.items():
        starts, covered = [], set()
        for i in range(len(ds)):
            if ds.get_data_info(i)['video_id'] == vid:
                meta = ds[i]['data_samples'].metainfo
                start = round(meta['window_offset'] * 29.97 / 8)
                starts.append(start)
                covered |= set(range(start, start + meta['valid_steps']))
        assert starts == window_starts(steps, 32, 0.25)
        assert covered == set(range(steps))
    probe = LoadTALFeature(feature_stride=8).probe(
        dict(feature_path=str(tmp_path / 'f1.npy'), fps=29.97))
    assert probe['total_steps'] == 131 and 'feature' not in probe

import json

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope

from re2tal_mm.datasets.synthetic import make_synthetic_dataset
from re2tal_mm.evaluation import TALMetric
from re2tal_mm.structures import TemporalGrid

from mmaction.registry import DATASETS, TRANSFORMS


@pytest.fixture(autouse=True)
def mmaction_scope():
    init_default_scope('mmaction')


FPS, STRIDE, STEPS = 10.0, 4, 57  # feature every 0.4 s, 22.8 s of video


def feature_set(tmp_path, num_videos=2):
    db = {}
    for v in range(num_videos):
        np.save(tmp_path / f'f{v}.npy',
                np.random.default_rng(v).random((STEPS + v, 3)))
        db[f'f{v}'] = dict(subset='validation', fps=FPS,
                           duration=(STEPS + v) * STRIDE / FPS,
                           annotations=[dict(segment=[2.0, 6.0], label='a')])
    ann = tmp_path / 'gt.json'
    ann.write_text(json.dumps(dict(database=db)))
    return str(ann)


def build(ann, tmp_path, num_steps, window=None, **kw):
    return DATASETS.build(dict(
        type='TALDataset', ann_file=ann, modality='Feature', test_mode=True,
        data_prefix=dict(feature=str(tmp_path)), window_duration=window,
        pipeline=[dict(type='LoadTALFeature', feature_stride=STRIDE),
                  dict(type='TALWindowSample', num_steps=num_steps,
                       test_mode=True),
                  dict(type='PackTALInputs')], **kw))


def fake_model(packed):
    """Position-wise: each valid step gives one segment of one step."""
    x, meta = packed['inputs'], packed['data_samples'].metainfo
    grid = TemporalGrid(meta['fps'], meta['grid_stride'],
                        meta['window_offset'])
    i = torch.arange(meta['valid_steps'], dtype=torch.float64)
    segs = torch.stack([grid.to_seconds(i), grid.to_seconds(i + 1)], 1)
    scores = x[0, :meta['valid_steps']].double()
    labels = (x[1, :meta['valid_steps']] > .5).long()
    return dict(video_id=meta['video_id'], pred_instances=dict(
        segments=segs, scores=scores, labels=labels))


def merged(ds, ann):
    metric = TALMetric(ann, nms=dict(method='hard', iou_threshold=0.5),
                       class_names=['a', 'b'])
    metric.process({}, [fake_model(ds[i]) for i in range(len(ds))])
    return metric.merge_predictions(metric.results, ['a', 'b'])


def test_sliding_windows_cover_and_merge(tmp_path):
    ann = feature_set(tmp_path)
    windows = build(ann, tmp_path, 16, window=16 * STRIDE / FPS)
    whole = build(ann, tmp_path, 64)
    assert len(whole) == 2 and len(windows) > 4
    for vid, total in (('f0', STEPS), ('f1', STEPS + 1)):
        covered = set()
        for i in range(len(windows)):
            meta = windows[i]['data_samples'].metainfo
            if meta['video_id'] == vid:
                start = round(meta['window_offset'] * FPS / STRIDE)
                covered |= set(range(start, start + meta['valid_steps']))
                assert meta['window_duration'] == pytest.approx(6.4)
        assert covered == set(range(total))
    a, b = merged(windows, ann), merged(whole, ann)
    assert a.keys() == b.keys()
    for vid in a:
        key = lambda d: (round(d['segment'][0], 6), d['label'])  # noqa
        pa, pb = sorted(a[vid], key=key), sorted(b[vid], key=key)
        assert len(pa) == len(pb) == len(b[vid])
        for x, y in zip(pa, pb):
            assert x['label'] == y['label'] and x['score'] == y['score']
            assert np.allclose(x['segment'], y['segment'])


def test_feature_sample_contents(tmp_path):
    ann = feature_set(tmp_path, 1)
    packed = build(ann, tmp_path, 64)[0]
    ds = packed['data_samples']
    assert packed['inputs'].shape == (3, 64)
    assert ds.gt_instances.segments.tolist() == [[2.0, 6.0]]
    assert ds.gt_instances.labels.dtype == torch.long
    for key in ('video_id', 'duration', 'fps', 'window_offset',
                'window_duration', 'num_steps', 'grid_stride'):
        assert key in ds.metainfo


def test_missing_files(tmp_path):
    ann = feature_set(tmp_path)
    (tmp_path / 'f1.npy').unlink()
    with pytest.raises(FileNotFoundError, match='f1.npy'):
        build(ann, tmp_path, 16)
    assert len(build(ann, tmp_path, 16, skip_missing=True)) == 1


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp('syn')
    ann = make_synthetic_dataset(str(out), num_videos=2, num_classes=2,
                                 seed=1, min_duration=20, max_duration=24)
    return out, ann


def test_synthetic_video_pipeline(synthetic):
    out, ann = synthetic
    ds = DATASETS.build(dict(
        type='TALDataset', ann_file=ann, subset='training',
        classes=['class_0', 'class_1'],
        data_prefix=dict(video=str(out / 'videos')), test_mode=True,
        pipeline=[dict(type='TALVideoInit'),
                  dict(type='TALWindowSample', num_steps=128, target_fps=5,
                       test_mode=True),
                  dict(type='TALVideoDecode'),
                  dict(type='FormatShape', input_format='NCTHW'),
                  dict(type='PackTALInputs')]))
    info = json.load(open(ann))['database'][ds.get_data_info(0)['video_id']]
    packed = ds[0]
    x, meta = packed['inputs'], packed['data_samples'].metainfo
    size = info['resolution'][0]
    assert x.shape == (1, 3, 128, size, size)
    assert meta['grid_stride'] == 2 and meta['fps'] == 10
    assert meta['valid_steps'] == round(info['duration'] * 10 / 2)
    # the coloured action disc is on the grid exactly inside the segments
    grid = TemporalGrid(meta['fps'], meta['grid_stride'])
    inside = np.zeros(meta['valid_steps'], bool)
    for s, e in packed['data_samples'].gt_instances.segments.tolist():
        lo, hi = grid.to_grid(np.array([s, e]))
        inside[int(np.ceil(lo)):int(np.ceil(hi))] = True
    assert inside.any()
    frames = x[0, :, :meta['valid_steps']].float()
    saturation = frames.max(0).values - frames.min(0).values
    disc = (saturation > 120).flatten(1).sum(1) > 3
    assert (disc.numpy() == inside).mean() > 0.95


def test_synthetic_deterministic_and_bad_video(synthetic, tmp_path):
    out, ann = synthetic
    again = make_synthetic_dataset(str(tmp_path), num_videos=2,
                                   num_classes=2, seed=1, min_duration=20,
                                   max_duration=24)
    assert open(again).read() == open(ann).read()
    bad = tmp_path / 'bad.mp4'
    bad.write_bytes(b'not a video at all')
    init = TRANSFORMS.build(dict(type='TALVideoInit'))
    with pytest.raises(IOError, match='bad.mp4'):
        init(dict(filename=str(bad)))


def test_train_windows_and_resize(tmp_path):
    ann = feature_set(tmp_path, 1)
    np.random.seed(0)
    sampler = TRANSFORMS.build(dict(type='TALWindowSample', num_steps=8,
                                    min_action_ratio=0.5))
    load = TRANSFORMS.build(dict(type='LoadTALFeature', feature_stride=STRIDE))
    ds = build(ann, tmp_path, 8)
    for _ in range(20):
        r = sampler(load(dict(ds.get_data_info(0), test_mode=False)))
        (s, e), = r['gt_segments'].tolist()
        assert (e - s) / 4.0 >= 0.5 and r['feature'].shape == (8, 3)
        lo, hi = r['window_offset'], r['window_offset'] + 3.2
        assert lo - 1e-5 <= s < e <= hi + 1e-5
    resize = TRANSFORMS.build(dict(type='TALWindowSample', num_steps=19,
                                   mode='resize'))
    r = resize(load(dict(ds.get_data_info(0))))
    assert r['feature'].shape == (19, 3) and r['window_offset'] == 0
    assert r['grid_stride'] * 19 / FPS == pytest.approx(22.8)


def test_pyav_fallback_matches_decord(synthetic):
    out, _ = synthetic
    path = str(out / 'videos' / 'syn_0000.mp4')
    frames = {}
    for backends in (('decord', ), ('pyav', )):
        r = TRANSFORMS.build(dict(type='TALVideoInit', backends=backends))(
            dict(filename=path))
        r['frame_inds'] = np.array([0, 5, 9])
        r = TRANSFORMS.build(dict(type='TALVideoDecode'))(r)
        frames[backends[0]] = (r['total_frames'], np.stack(r['imgs']))
    assert frames['decord'][0] == frames['pyav'][0]
    assert frames['decord'][1].shape == frames['pyav'][1].shape
    diff = np.abs(frames['decord'][1].astype(int) - frames['pyav'][1])
    assert diff.mean() < 3


def test_resize_sampling():
    """``'start'``: the first step of each bin (at the time its position
    stands for); ``'center'``: OpenTAD's ``LoadFrames(method='resize')``,
    the bin centre rounded (numpy's half-to-even), written out by hand."""
    from re2tal_mm.datasets.transforms import resize_indices
    assert resize_indices(100, 8).tolist() == [0, 12, 25, 37, 50, 62, 75, 87]
    # stride 12.5: centres 5.75, 18.25, ... (OpenTAD: arange(5.75, ...))
    assert resize_indices(100, 8, 'center').tolist() == [
        6, 18, 31, 43, 56, 68, 81, 93]
    # stride 1.5: 0.25, 1.75, 3.25, ...; stride 2: 0.5, 2.5, 4.5 (ties)
    assert resize_indices(12, 8, 'center').tolist() == [
        0, 2, 3, 5, 6, 8, 9, 11]
    assert resize_indices(6, 3, 'center').tolist() == [0, 2, 4]
    # fewer steps than bins: clipped to the last step
    assert resize_indices(3, 6, 'center').tolist() == [0, 0, 1, 1, 2, 2]
    sample = dict(feature=np.arange(100)[:, None].astype(np.float32),
                  total_steps=100, fps=FPS, feature_stride=STRIDE,
                  duration=100 * STRIDE / FPS, test_mode=True,
                  gt_segments=np.zeros((0, 2), np.float32),
                  gt_labels=np.zeros(0, np.int64))
    centre = TRANSFORMS.build(dict(type='TALWindowSample', num_steps=8,
                                   mode='resize', resize_sampling='center'))
    r = centre(dict(sample))
    assert r['feature'][:, 0].tolist() == [6, 18, 31, 43, 56, 68, 81, 93]
    assert r['grid_stride'] == pytest.approx(STRIDE * 12.5)
    with pytest.raises(ValueError, match='resize_sampling'):
        TRANSFORMS.build(dict(type='TALWindowSample', num_steps=8,
                              mode='resize', resize_sampling='middle'))


def test_min_segment_ratio_and_class_agnostic(tmp_path):
    """OpenTAD's ActivityNet training ground truth: segments not longer
    than 1% of the video left out (a video left without any too), every
    label 0; the classes stay the dataset's."""
    db = dict(
        a=dict(subset='training', duration=100., annotations=[
            dict(segment=[1., 1.5], label='x'),
            dict(segment=[10., 30.], label='y')]),
        b=dict(subset='training', duration=100., annotations=[
            dict(segment=[5., 5.9], label='y')]),
        c=dict(subset='training', duration=10., annotations=[
            dict(segment=[5., 5.5], label='x')]))
    ann = tmp_path / 'gt.json'
    ann.write_text(json.dumps(dict(database=db)))
    for vid in db:
        np.save(tmp_path / f'{vid}.npy', np.zeros((10, 3), np.float32))

    def entries(**kw):
        ds = DATASETS.build(dict(
            type='TALDataset', ann_file=str(ann), modality='Feature',
            data_prefix=dict(feature=str(tmp_path)),
            pipeline=[dict(type='PackTALInputs')], **kw))
        return ds, {ds.get_data_info(i)['video_id']: ds.get_data_info(i)
                    for i in range(len(ds))}

    ds, got = entries()
    assert sorted(got) == ['a', 'b', 'c']
    assert got['a']['gt_labels'].tolist() == [0, 1]
    ds, got = entries(min_segment_ratio=0.01, class_agnostic=True)
    assert sorted(got) == ['a', 'c']  # b: only a 0.9% segment
    assert got['a']['gt_segments'].tolist() == [[10., 30.]]
    assert got['a']['gt_labels'].tolist() == [0]
    assert got['c']['gt_labels'].tolist() == [0]
    assert ds.metainfo['classes'] == ('x', 'y')
    with pytest.raises(ValueError, match='min_segment_ratio'):
        entries(min_segment_ratio=1.5)

"""demo/localize_video.py: localize actions in a video file."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from .conftest import REPO

CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
SCRIPT = osp.join(REPO, 'demo', 'localize_video.py')
CLASSES = [f'class_{i}' for i in range(4)]


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    from re2tal_mm.apis import init_localizer
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    root = tmp_path_factory.mktemp('localize')
    make_synthetic_dataset(str(root / 'syn'), num_videos=1, num_classes=4,
                           seed=0, min_duration=10, max_duration=16)
    video = str(root / 'syn' / 'videos' / 'syn_0000.mp4')
    duration = json.load(open(root / 'syn' / 'annotations.json'))[
        'database']['syn_0000']['duration']
    torch.manual_seed(0)
    model = init_localizer(CONFIG)  # random init
    ckpt = str(root / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    return dict(root=root, video=video, duration=duration, ckpt=ckpt)


def run_script(*args, cwd):
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)], cwd=cwd,
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES=''))


def check_results(results, duration):
    assert list(results) == ['syn_0000']
    dets = results['syn_0000']
    assert dets, 'a random model above score_thr 0 detects something'
    for d in dets:
        s, e = d['segment']
        assert 0 <= s < e <= duration + 1e-6
        assert d['label'] in CLASSES
        assert 0 <= d['score'] <= 1
    scores = [d['score'] for d in dets]
    assert scores == sorted(scores, reverse=True)


def test_localize_video_script(assets, tmp_path):
    out, plot = tmp_path / 'result.json', tmp_path / 'timeline.png'
    res = run_script(assets['video'], CONFIG, assets['ckpt'], '--out', out,
                     '--plot', plot, '--score-thr', 0, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.load(open(out))
    check_results(data['results'], assets['duration'])
    import matplotlib.image as mpimg
    img = mpimg.imread(str(plot))
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 100

    def red_pixels(image):
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        return int(((r > 0.9) & (g < 0.2) & (b < 0.2)).sum())

    assert red_pixels(img) == 0  # no ground truth drawn
    gt_plot = tmp_path / 'timeline_gt.png'
    res = run_script(assets['video'], CONFIG, assets['ckpt'], '--out', out,
                     '--plot', gt_plot, '--score-thr', 0, '--gt',
                     assets['root'] / 'syn' / 'annotations.json',
                     cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert red_pixels(mpimg.imread(str(gt_plot))) > 50  # red GT outlines


def test_localize_video_function(assets):
    from re2tal_mm.apis import init_localizer, localize_video
    model = init_localizer(CONFIG, assets['ckpt'])
    result = localize_video(model, assets['video'], score_thr=0.0,
                            progress=False)
    assert result['video_id'] == 'syn_0000'
    assert result['duration'] == pytest.approx(assets['duration'], abs=0.2)
    check_results({'syn_0000': result['results']}, result['duration'])
    high = localize_video(model, assets['video'], score_thr=1.1,
                          progress=False)
    assert high['results'] == []


def test_missing_video(assets, tmp_path):
    missing = tmp_path / 'nope.mp4'
    res = run_script(missing, CONFIG, assets['ckpt'], cwd=tmp_path)
    assert res.returncode != 0
    assert str(missing) in res.stderr
    assert 'Traceback' not in res.stderr


def test_undecodable_video(assets, tmp_path):
    bad = tmp_path / 'garbage.mp4'
    bad.write_bytes(b'this is not a video' * 10)
    res = run_script(bad, CONFIG, assets['ckpt'], '--out',
                     tmp_path / 'r.json', cwd=tmp_path)
    assert res.returncode != 0
    assert str(bad) in res.stderr and 'decode' in res.stderr
    assert 'Traceback' not in res.stderr
    assert not (tmp_path / 'r.json').exists()


def test_progress_bar_over_windows(assets, capsys):
    from re2tal_mm.apis import init_localizer, localize_video
    model = init_localizer(CONFIG, assets['ckpt'])
    localize_video(model, assets['video'], score_thr=0.5)
    err = capsys.readouterr().err
    assert 'syn_0000' in err and 'window' in err  # tqdm's bar


LONG_FRAMES, LONG_FPS, GOP = 600, 10, 50  # 60 s; a keyframe every 5 s


@pytest.fixture(scope='module')
def long_video(tmp_path_factory):
    from .test_video_decoding import write_video
    root = tmp_path_factory.mktemp('long')
    return write_video(root / 'long_0000.mp4', LONG_FRAMES, 64, 64,
                       LONG_FPS, gop=GOP)


@pytest.fixture(scope='module')
def model():
    from re2tal_mm.apis import init_localizer
    torch.manual_seed(0)
    return init_localizer(CONFIG)  # random init


def record_decoder(monkeypatch, backend):
    """Count the readers opened and the frames asked of them per call."""
    if backend == 'decord':
        import decord
        cls = decord.VideoReader
    else:
        from re2tal_mm.datasets.transforms import PyAVVideoReader as cls
    calls = dict(opened=0, asked=[], decoded=[])
    init, get_batch = cls.__init__, cls.get_batch

    def counting_init(self, *args, **kwargs):
        calls['opened'] += 1
        init(self, *args, **kwargs)

    def recording_get_batch(self, inds):
        before = getattr(self, 'frames_decoded', None)
        out = get_batch(self, inds)
        calls['asked'].append(len(inds))
        if before is not None:  # PyAV: frames decoded, asked for or not
            calls['decoded'].append((before, self.frames_decoded - before))
        return out

    def refused(self, *args, **kwargs):
        raise AssertionError('frames read outside get_batch')

    monkeypatch.setattr(cls, '__init__', counting_init)
    monkeypatch.setattr(cls, 'get_batch', recording_get_batch)
    for name in ('__getitem__', 'next'):
        if hasattr(cls, name):
            monkeypatch.setattr(cls, name, refused)
    return calls


@pytest.mark.parametrize('backend', ['decord', 'pyav'])
def test_decoder_is_asked_for_one_window_at_a_time(model, long_video,
                                                   monkeypatch, backend):
    from re2tal_mm.apis import localize_video
    from re2tal_mm.datasets import window_starts
    calls = record_decoder(monkeypatch, backend)
    result = localize_video(model, long_video, progress=False,
                            backends=(backend, ))
    assert result['duration'] == LONG_FRAMES / LONG_FPS
    num_steps, stride = 64, 2  # the demo config: 64 frames at 5 fps
    windows = window_starts(LONG_FRAMES // stride, num_steps, 0.5)
    assert len(windows) > 5
    assert calls['opened'] == 1  # opened once, for all windows
    # decord is asked in calls of TALVideoDecode's frames_per_call (16)
    per_call = num_steps if backend == 'pyav' else 16
    assert calls['asked'] == [per_call] * (num_steps // per_call *
                                           len(windows))
    if backend == 'pyav':
        assert calls['decoded'][0][0] == 0  # opening decoded nothing
        # each window: from the keyframe before it to its last frame
        assert max(n for _, n in calls['decoded']) <= GOP + num_steps * \
            stride
        assert sum(n for _, n in calls['decoded']) < 3 * LONG_FRAMES


def test_equals_the_sliding_window_test_of_a_dataset(model, long_video,
                                                     tmp_path):
    """What ``mim test`` computes of the video: TALDataset's windows."""
    import copy

    from mmengine.dataset import pseudo_collate

    from re2tal_mm.apis import localize_video
    from re2tal_mm.evaluation import TALMetric

    from mmaction.registry import DATASETS
    duration = LONG_FRAMES / LONG_FPS
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(database=dict(long_0000=dict(
        subset='validation', duration=duration, fps=LONG_FPS,
        annotations=[])))))
    ds_cfg = copy.deepcopy(model.cfg.test_dataloader.dataset)
    ds_cfg.update(ann_file=str(ann), classes=CLASSES,
                  data_prefix=dict(video=osp.dirname(long_video)))
    ds = DATASETS.build(ds_cfg)
    metric = TALMetric(ann_file=None)
    with torch.no_grad():
        for i in range(len(ds)):
            metric.process(None, model.test_step(pseudo_collate([ds[i]])))
    expected = []
    for d in metric.merge_predictions(metric.results, CLASSES)['long_0000']:
        s, e = (min(max(t, 0.0), duration) for t in d['segment'])
        if e > s:
            expected.append((s, e, d['score'], d['label']))
    assert len(ds) > 5 and expected
    for backend in ('decord', 'pyav'):
        got = localize_video(model, long_video, progress=False,
                             backends=(backend, ))['results']
        assert len(got) == len(expected), backend
        for g, (s, e, score, label) in zip(got, expected):
            assert g['label'] == label
            assert g['segment'] == pytest.approx([s, e], abs=1e-5)
            assert g['score'] == pytest.approx(score, abs=1e-5)


def test_timeline_lanes_separate_overlapping_detections(tmp_path):
    from re2tal_mm.apis.inference import plot_timeline, timeline_lanes
    segs = [[5, 20], [8, 18], [10, 25], [30, 40], [19, 31], [20, 22]]
    lanes = timeline_lanes(segs)
    assert lanes == [0, 1, 2, 0, 1, 0]  # three overlap at t = 11: 3 lanes
    for i, (a, b) in enumerate(segs):
        for j, (c, d) in enumerate(segs[:i]):
            if lanes[i] == lanes[j]:
                assert b <= c or d <= a, (i, j)
    result = dict(video_id='v', duration=60, results=[
        dict(segment=s, score=0.5, label='x') for s in segs])
    out = plot_timeline(result, str(tmp_path / 't.png'), ['x'])
    assert osp.getsize(out) > 0

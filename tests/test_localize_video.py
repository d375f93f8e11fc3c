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

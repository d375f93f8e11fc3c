"""Feature extraction (``tools/extract_features.py``, ``re2tal_mm.apis``).

1. Round trip: features of generated videos (the demo config's Swin, random
   weights, spatial max pooling), rewired reversible; the same features from
   the backbone rewired ``autograd``, and with autograd enabled (the
   reversible engine's autograd Function instead of its plain no-grad loop);
   a feature-mode ActionFormer localizer trained on them, through
   ``TALDataset(modality='Feature')`` and a bare ``LoadTALFeature()``,
   finds the actions of the same videos.
2. The time grid: a white flash planted at 3.0-3.5 s is found, through the
   manifest and ``TemporalGrid``, at the feature steps that cover it.
3. Resume and sharding: an extraction killed after its first video and
   rerun does every video once with the outputs of an uninterrupted run;
   two processes (``RANK`` / ``WORLD_SIZE``) split the videos.
Plus: the manifest as ``LoadTALFeature`` reads it, and undecodable videos.
"""
import importlib.util
import json
import logging
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

import re2tal_mm  # noqa: F401  (registers the components)
from re2tal_mm.apis import build_feature_extractor, extract_video_features
from re2tal_mm.apis.features import clip_starts, feature_grid
from re2tal_mm.datasets.synthetic import make_synthetic_dataset, write_h264
from re2tal_mm.structures import TemporalGrid

from mmaction.registry import DATASETS, MODELS, TRANSFORMS
from .conftest import REPO

DEMO = osp.join(REPO, 'configs', 're2tal',
                're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
TINY = osp.join(REPO, 'tests', 'data', 'tiny_recognizer_config.py')
TOOL = osp.join(REPO, 'tools', 'extract_features.py')
CLASSES = [f'class_{k}' for k in range(4)]
# the demo Swin on 32 x 32 crops of 8-frame clips every 4 frames (0.4 s)
DEMO_ARGS = ['--size', '32', '--clip-len', '8', '--stride', '4']


def load_tool():
    spec = importlib.util.spec_from_file_location('extract_features', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module', autouse=True)
def mmaction_scope():
    init_default_scope('mmaction')


@pytest.fixture(scope='module')
def tool():
    return load_tool()


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """8 generated videos of 20-30 s at 10 fps, 4 classes."""
    out = tmp_path_factory.mktemp('synthetic')
    ann = make_synthetic_dataset(str(out), num_videos=8, num_classes=4,
                                 min_duration=20, max_duration=30)
    return str(out / 'videos'), ann


def done_ids(text):
    return re.findall(r'\[extract_features\] done (\S+):', text)


# ------------------------------------------------------------ 1. round trip
def graph_names(node):
    """Names of the autograd nodes behind ``node``, joined."""
    names, todo, seen = [], [node], set()
    while todo:
        n = todo.pop()
        if n is None or n in seen:
            continue
        seen.add(n)
        names.append(type(n).__name__)
        todo.extend(m for m, _ in n.next_functions)
    return ' '.join(names)


def train_localizer(feature_dir, ann, iters=150):
    """A feature-mode ActionFormer localizer trained on ``feature_dir``
    (every video of ``ann``); returns it and its mAP on the same videos."""
    from re2tal_mm.evaluation import TALMetric

    def dataset(test_mode):
        return DATASETS.build(dict(
            type='TALDataset', ann_file=ann, modality='Feature',
            classes=CLASSES, data_prefix=dict(feature=feature_dir),
            test_mode=test_mode,
            pipeline=[dict(type='LoadTALFeature'),  # the grid: manifest
                      dict(type='TALWindowSample', num_steps=96,
                           test_mode=test_mode),
                      dict(type='PackTALInputs')]))

    train, test = dataset(False), dataset(True)
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='TemporalActionLocalizer',
        neck=dict(type='ActionFormerNeck', in_channels=48, embed_dims=32,
                  num_levels=4, num_heads=4, window_size=9, drop_path=0.0),
        head=dict(type='ActionFormerHead', num_classes=4, in_channels=32,
                  feat_channels=32, strides=(1, 2, 4, 8),
                  regress_ranges=((0, 4), (4, 8), (8, 16), (16, 10000))),
        post_processor=dict(type='TALPostProcessor', score_thr=0.01)))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    samples = [train[i] for i in range(len(train))]
    losses = []
    model.train()
    for _ in range(iters):
        batch = [samples[i] for i in rng.integers(len(samples), size=4)]
        data = model.data_preprocessor(pseudo_collate(batch), True)
        loss = sum(model(**data, mode='loss').values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    metric = TALMetric(ann_file=ann, tiou_thresholds=(0.3, 0.5, 0.7),
                       class_names=CLASSES, print_per_class=False)
    with torch.no_grad():
        for i in range(len(test)):
            data = model.data_preprocessor(pseudo_collate([test[i]]), False)
            metric.process(None, model(**data, mode='predict'))
    return metric.compute_metrics(metric.results), losses


def test_round_trip_features_train_a_localizer(synthetic, tool, tmp_path,
                                               capsys):
    videos, ann = synthetic
    out = str(tmp_path / 'features')
    t0 = time.time()
    assert tool.main([DEMO, 'none', '--video-dir', videos, '--ann-file', ann,
                      '--out', out, '--no-progress'] + DEMO_ARGS) == 0
    seconds = time.time() - t0
    assert len(done_ids(capsys.readouterr().out)) == 8
    with open(osp.join(out, 'manifest.json')) as f:
        manifest = json.load(f)['videos']
    assert sorted(manifest) == [f'syn_{v:04d}' for v in range(8)]
    entry = manifest['syn_0000']
    assert entry['rewiring'] == dict(mode='reversible')  # the config's
    assert (entry['fps'], entry['feature_stride'], entry['center']) == \
        (10.0, 4.0, 1.0)  # 8-frame clips: feature i at frame 4 i + 4
    assert entry['spatial_pool'] == 'max' and entry['feature_dim'] == 48

    # the rewired function in its three executions gives one set of
    # features: reversible without grad (the plain rewired loop: what the
    # tool ran), reversible with autograd on (the reversible autograd
    # Function) and autograd-mode rewiring (ordinary autograd), with and
    # without grad; the un-rewired backbone is another function
    saved = np.load(osp.join(out, 'syn_0000.npy'))
    video = osp.join(videos, 'syn_0000.mp4')
    kwargs = dict(clip_len=8, frame_interval=1, stride=4, size=32)
    diffs = {}
    for mode, grad in [('reversible', False), ('reversible', True),
                       ('autograd', False), ('autograd', True),
                       ('none', False)]:
        ex = build_feature_extractor(DEMO, None, rewiring=mode)
        feats, _ = extract_video_features(ex, video, enable_grad=grad,
                                          **kwargs)
        diffs[mode, grad] = float(np.abs(feats - saved).max())
        if mode == 'reversible' and grad:  # the autograd Function ran
            with torch.enable_grad():
                y = ex(ex.preprocess(torch.zeros(1, 8, 32, 32, 3,
                                                 dtype=torch.uint8)))
            assert 'ReversibleChainFunction' in graph_names(y.grad_fn)
    print(f'\nmax |difference| to the extracted features (mode, grad): '
          f'{diffs}')
    for key, diff in diffs.items():
        if key[0] != 'none':
            assert diff <= 1e-6, (key, diffs)
    assert diffs['none', False] > 1e-3  # the comparison is not vacuous

    metrics, losses = train_localizer(out, ann)
    print(f'extraction of 8 videos: {seconds:.1f} s; trained on the same '
          f'8 videos, evaluated on them: {metrics}; loss '
          f'{np.mean(losses[:20]):.3f} -> {np.mean(losses[-20:]):.3f}')
    assert metrics['mAP@0.50'] >= 0.8


# --------------------------------------------------------------- 2. grid
FLASH_FPS, FLASH = 20, (3.0, 3.5)  # frames 60 .. 69 white


def write_flash_video(path, flash=True, seconds=8, size=64):
    """Black frames, white from 3.0 s to 3.5 s (libx264)."""
    def frames():
        for i in range(seconds * FLASH_FPS):
            white = flash and FLASH[0] <= i / FLASH_FPS < FLASH[1]
            yield np.full((size, size, 3), 255 if white else 0, np.uint8)
    write_h264(path, frames(), FLASH_FPS)


def feature_times(feature_path):
    """Centre times (s) of the features, as the dataset maps them: the
    grid ``LoadTALFeature`` reads from the manifest, through
    ``TemporalGrid``."""
    res = TRANSFORMS.build(dict(type='LoadTALFeature'))(
        dict(feature_path=feature_path))
    grid = TemporalGrid(res['fps'], res['feature_stride'],
                        center=res['grid_center'])
    return res['feature'], grid.to_seconds(np.arange(res['total_steps']))


@pytest.mark.parametrize('layout', [
    dict(clip_len=16, frame_interval=1, stride=8, temporal_pool='avg'),
    dict(clip_len=8, frame_interval=2, stride=8, temporal_pool='avg'),
    dict(clip_len=16, frame_interval=1, stride=16, temporal_pool='none'),
], ids=['16x1-every-8', '8x2-every-8', '16x1-steps'])
def test_feature_grid_finds_a_planted_flash(tool, tmp_path, layout):
    videos = tmp_path / 'videos'
    videos.mkdir()
    write_flash_video(str(videos / 'flash.mp4'))
    write_flash_video(str(videos / 'black.mp4'), flash=False)
    out = str(tmp_path / 'features')
    args = [TINY, 'none', '--video-dir', str(videos), '--out', out,
            '--size', '32', '--no-progress']
    for key, value in layout.items():
        args += [f'--{key.replace("_", "-")}', str(value)]
    assert tool.main(args) == 0
    feats, times = feature_times(osp.join(out, 'flash.npy'))
    black, _ = feature_times(osp.join(out, 'black.npy'))
    response = np.linalg.norm(feats - black, axis=1)  # 0 away from it
    step = times[1] - times[0]
    mid = sum(FLASH) / 2
    if layout['temporal_pool'] == 'avg':
        # one feature per clip: the clip holding the whole flash wins, its
        # centre within half a feature stride of the flash's middle
        best = times[int(response.argmax())]
        assert abs(best - mid) <= step / 2 + 1e-6, (best, times, response)
        assert step == pytest.approx(8 / FLASH_FPS)
    else:
        # every backbone step: ResNet3d's conv1 halves time, so 8 steps of
        # 2 frames per 16-frame clip, the first centred at frame 1; clips
        # run on their own, so exactly the steps of the two clips holding
        # flash frames (frames 48 .. 79: 2.4 s to 4.0 s) respond
        assert step == pytest.approx(2 / FLASH_FPS)
        assert len(times) == 80 and times[0] == pytest.approx(0.05)
        lit = response > 1e-4 * response.max()
        assert (lit == ((times > 2.4) & (times < 4.0))).all(), (
            times[lit], response)


# --------------------------------------------------- 3. resume, sharding
@pytest.fixture(scope='module')
def short_videos(tmp_path_factory):
    """6 generated videos of 12-16 s."""
    out = tmp_path_factory.mktemp('short')
    make_synthetic_dataset(str(out), num_videos=6, num_classes=4, seed=1,
                           min_duration=12, max_duration=16)
    return str(out / 'videos')


def tool_args(videos, out):
    return [TINY, 'none', '--video-dir', videos, '--out', out,
            '--size', '32', '--clip-len', '8', '--stride', '4',
            '--batch-size', '4']


def spawn(args, log, **env):
    """The tool in another process, its output in the file ``log``."""
    with open(log, 'w') as f:
        return subprocess.Popen(
            [sys.executable, TOOL] + args + ['--no-progress'], cwd=REPO,
            stdout=f, stderr=subprocess.STDOUT,
            env=dict(os.environ, OMP_NUM_THREADS='1', **env))


def read(path):
    with open(path) as f:
        return f.read()


def outputs(folder):
    """Every output file's bytes (features, entries, merged manifest)."""
    found = {}
    for name in sorted(os.listdir(folder)):
        with open(osp.join(folder, name), 'rb') as f:
            found[name] = f.read()
    return found


def test_resume_after_kill_and_sharding(tool, short_videos, tmp_path,
                                        capsys):
    ids = [f'syn_{v:04d}' for v in range(6)]
    # two processes split the videos (k % 2): rank 1 in the background
    # (RANK / WORLD_SIZE, as torchrun sets them), rank 0 in this one
    split = str(tmp_path / 'sharded')
    rank1_log = str(tmp_path / 'rank1.log')
    rank1 = spawn(tool_args(short_videos, split), rank1_log, RANK='1',
                  WORLD_SIZE='2')
    # an extraction killed (SIGKILL) as soon as it reports a video done
    out, log = str(tmp_path / 'resumed'), str(tmp_path / 'killed.log')
    proc = spawn(tool_args(short_videos, out), log)
    deadline = time.monotonic() + 120
    while not done_ids(read(log)):
        assert proc.poll() is None, read(log)
        assert time.monotonic() < deadline, read(log)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # what it finished: the videos with an entry (written last, after the
    # features), at least those it reported
    first = sorted(n[:-5] for n in os.listdir(out) if n.endswith('.json'))
    assert set(done_ids(read(log))) <= set(first)
    assert first and len(first) < len(ids), first  # interrupted midway
    assert 'manifest.json' not in os.listdir(out)  # written at the end
    assert tool.main(tool_args(short_videos, out)) == 0  # the rerun
    text = capsys.readouterr().out
    second = done_ids(text)
    assert sorted(re.findall(r'skip (\S+) \(already', text)) == first
    assert not set(first) & set(second)  # no video done twice
    assert sorted(first + second) == ids
    # the outputs of an uninterrupted run (and nothing else left behind)
    ref = str(tmp_path / 'reference')
    assert tool.main(tool_args(short_videos, ref)) == 0
    assert sorted(done_ids(capsys.readouterr().out)) == ids
    assert outputs(out) == outputs(ref)

    assert tool.main(tool_args(short_videos, split) + ['--shard', '0/2']) \
        == 0
    rank0 = done_ids(capsys.readouterr().out)
    assert rank1.wait(timeout=300) == 0, read(rank1_log)
    assert [rank0, done_ids(read(rank1_log))] == \
        [ids[0::2], ids[1::2]]  # each video once
    assert outputs(split) == outputs(ref)  # manifest.json: all six


# ---------------------------------------------------- manifest, failures
class Recorder(logging.Handler):
    """Keeps the messages logged to the logger it is added to."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_load_tal_feature_reads_the_manifest(tool, tmp_path, capsys):
    from mmengine.logging import MMLogger
    videos = tmp_path / 'videos'
    videos.mkdir()
    write_flash_video(str(videos / 'a.mp4'), seconds=2)
    out = tmp_path / 'features'
    assert tool.main([TINY, 'none', '--video-dir', str(videos), '--out',
                      str(out), '--size', '32', '--no-progress']) == 0
    path = str(out / 'a.npy')
    entry = json.loads((out / 'a.json').read_text())
    # the default clip layout: 16 frames every 4, feature i at 4 i + 8
    assert (entry['clip_len'], entry['feature_stride'],
            entry['center_frames'], entry['center']) == (16, 4.0, 8.0, 2.0)
    assert entry['num_frames'] == 40 and entry['num_features'] == \
        len(clip_starts(40, 16, 1, 4)) == 7
    load = TRANSFORMS.build(dict(type='LoadTALFeature'))
    # the manifest's fps wins over the annotation's: the features were
    # extracted at the container's rate
    res = load(dict(feature_path=path, fps=25.0))
    assert (res['fps'], res['feature_stride'], res['grid_center']) == \
        (20.0, 4.0, 2.0)
    # the merged manifest.json serves when the per-video entry is gone
    os.remove(out / 'a.json')
    res = load(dict(feature_path=path))
    assert (res['fps'], res['feature_stride'], res['grid_center']) == \
        (20.0, 4.0, 2.0)
    # explicit arguments override, with a warning naming the manifest
    logger = MMLogger.get_current_instance()
    handler = Recorder()
    messages = handler.messages
    logger.addHandler(handler)
    try:
        res = TRANSFORMS.build(dict(type='LoadTALFeature', feature_stride=8,
                                    center=0.5))(dict(feature_path=path))
    finally:
        logger.removeHandler(handler)
    assert (res['feature_stride'], res['grid_center']) == (8.0, 0.5)
    assert any('manifest.json' in m and 'overrides' in m for m in messages)
    # a manifest of another shape than the file is an error naming both
    np.save(path, np.zeros((3, 16), np.float32))
    with pytest.raises(ValueError, match='a.npy.*manifest.json'):
        load(dict(feature_path=path))
    # without a manifest: the annotation's fps, else an error
    bare = tmp_path / 'bare.npy'
    np.save(bare, np.zeros((5, 4), np.float32))
    res = load(dict(feature_path=str(bare), fps=30.0))
    assert (res['fps'], res['feature_stride'], res['grid_center']) == \
        (30.0, 1.0, 0.0)
    with pytest.raises(ValueError, match='bare.npy: no fps'):
        load(dict(feature_path=str(bare)))
    # the grid of the layouts
    assert feature_grid(16, 1, 4) == dict(feature_stride=4.0,
                                          center_frames=8.0, center=2.0)
    assert feature_grid(8, 2, 16, 'none', 4) == dict(
        feature_stride=4.0, center_frames=2.0, center=0.5)
    with pytest.raises(ValueError, match='stride must be'):
        feature_grid(16, 1, 4, 'none', 8)


def test_undecodable_video_is_logged_and_extraction_goes_on(tool, tmp_path,
                                                            capsys):
    videos = tmp_path / 'videos'
    videos.mkdir()
    write_flash_video(str(videos / 'good.mp4'), seconds=2)
    (videos / 'bad.mp4').write_bytes(b'not a video at all' * 10)
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(database={
        v: dict(subset='test', duration=2.0, annotations=[])
        for v in ('bad', 'good', 'missing')})))
    out = tmp_path / 'features'
    args = [TINY, 'none', '--video-dir', str(videos), '--ann-file',
            str(ann), '--out', str(out), '--size', '32', '--no-progress']
    assert tool.main(args) == 1
    text = capsys.readouterr().out
    assert done_ids(text) == ['good']
    assert '2 video(s) could not be extracted' in text
    rows = [line.split('\t') for line in
            (out / 'failures.txt').read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ['bad', 'missing']
    assert rows[0][1].endswith('bad.mp4') and 'bad.mp4' in rows[0][2]
    assert 'not found' in rows[1][2]
    assert sorted(json.loads((out / 'manifest.json').read_text())[
        'videos']) == ['good']
    # a rerun skips the good video and tries the others again
    assert tool.main(args) == 1
    text = capsys.readouterr().out
    assert done_ids(text) == [] and 'skip good' in text

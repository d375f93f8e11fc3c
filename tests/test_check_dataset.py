"""Data checked before training: ``tools/data/check_dataset.py`` on a
dataset with a missing, a truncated and a mislabelled video; training with
its skip list and with ``skip_undecodable``; messages naming what to fix."""
import copy
import importlib.util
import json
import logging
import os.path as osp
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

from re2tal_mm.datasets.annotations import clean_segments
from re2tal_mm.datasets.tal_dataset import read_skip_list

from mmaction.registry import DATASETS
from .conftest import REPO, own_logger, runner_log

CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
TOOL = osp.join(REPO, 'tools', 'data', 'check_dataset.py')
MISSING, TRUNCATED, MISLABELLED, GOOD = (f'syn_{i:04d}' for i in range(4))


def load_tool():
    spec = importlib.util.spec_from_file_location('check_dataset', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def broken(tmp_path_factory):
    """4 synthetic videos (3 training, 1 validation): one deleted, one cut to
    30% of its bytes, one whose annotation says twice its duration (and has
    a segment past that, for the clipping message)."""
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    root = tmp_path_factory.mktemp('check_dataset')
    data = root / 'syn'
    make_synthetic_dataset(str(data), num_videos=4, num_classes=4,
                           min_duration=6, max_duration=8)
    videos = data / 'videos'
    (videos / f'{MISSING}.mp4').unlink()
    cut = videos / f'{TRUNCATED}.mp4'
    cut.write_bytes(cut.read_bytes()[:int(cut.stat().st_size * 0.3)])
    ann_file = data / 'annotations.json'
    ann = json.loads(ann_file.read_text())
    info = ann['database'][MISLABELLED]
    assert info['subset'] == 'training'
    real = info['duration']
    info['duration'] = 2 * real
    info['annotations'].append(dict(segment=[2 * real - 1, 2 * real + 1.5],
                                    label='class_0'))
    ann_file.write_text(json.dumps(ann))
    cfg = root / 'check_cfg.py'
    cfg.write_text(
        f'_base_ = [{CONFIG!r}]\n'
        f'_ann = {str(ann_file)!r}\n'
        f'_prefix = dict(video={str(videos)!r})\n' + ''.join(
            f'{key} = dict(dataset=dict(ann_file=_ann, data_prefix=_prefix))'
            '\n' for key in ('train_dataloader', 'val_dataloader',
                             'test_dataloader')))
    out = root / 'report'
    proc = subprocess.run(
        [sys.executable, TOOL, str(cfg), '--workers', '2', '--out-dir',
         str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(__import__('os').environ, OMP_NUM_THREADS='1'))
    return dict(root=root, data=data, ann=str(ann_file), videos=str(videos),
                real=real, cfg=str(cfg), out=out, proc=proc)


def test_report_names_the_three_videos(broken):
    proc, out = broken['proc'], broken['out']
    assert proc.returncode == 1, proc.stdout + proc.stderr
    skip_list = str(out / 'skip_list.txt')
    assert skip_list in proc.stderr  # the path, where scripts look
    assert read_skip_list(skip_list) == [MISSING, TRUNCATED]
    report = json.loads((out / 'report.json').read_text())
    rows = {r['video_id']: r for r in report['videos']}
    assert {v: r['status'] for v, r in rows.items()} == {
        MISSING: 'missing', TRUNCATED: 'undecodable',
        MISLABELLED: 'duration_mismatch', GOOD: 'ok'}
    assert report['summary'] == dict(missing=1, undecodable=1,
                                     duration_mismatch=1, fps_mismatch=0,
                                     ok=1)
    assert 'file not found' in rows[MISSING]['error']
    assert 'moov atom not found' in rows[TRUNCATED]['error']
    bad = rows[MISLABELLED]
    assert bad['ann_duration'] == pytest.approx(2 * broken['real'])
    assert bad['duration'] == pytest.approx(broken['real'], abs=0.2)
    assert bad['fps'] == pytest.approx(10) and bad['frames'] > 0
    assert bad['segments_past_end'] == 1 and bad['error'] is None
    good = rows[GOOD]
    assert good['problems'] == [] and good['splits'] == ['val', 'test']
    assert good['last_frame'] == good['frames'] - 1
    text = (out / 'report.txt').read_text()
    for vid, status in ((MISSING, 'missing'), (TRUNCATED, 'undecodable'),
                        (MISLABELLED, 'duration_mismatch')):
        line = next(ln for ln in text.splitlines() if ln.startswith(vid))
        assert status in line
    assert 'annotation duration' in text and skip_list in text
    assert GOOD not in text  # only the problem videos are listed
    assert text.splitlines()[0] in proc.stdout  # the summary, printed


def test_skip_mismatched_data_root_and_help(broken, tmp_path):
    """The demo config itself, moved by ``data_root`` alone (when its
    runner applies it), train split only, mismatches skipped too."""
    tool = load_tool()
    argv = ['--split', 'train', '--workers', '0', '--skip-mismatched',
            '--no-progress', '--out-dir', str(tmp_path)]
    if Config.fromfile(CONFIG).get('runner_type') == 'DataRootRunner':
        argv = [CONFIG, '--cfg-options', f'data_root={broken["data"]}'
                ] + argv
    else:  # pragma: no cover - configs with paths made at parse time
        argv = [broken['cfg']] + argv
    assert tool.main(argv) == 1
    rows = json.loads((tmp_path / 'report.json').read_text())['videos']
    assert sorted(r['video_id'] for r in rows) == [MISSING, TRUNCATED,
                                                   MISLABELLED]
    assert read_skip_list(str(tmp_path / 'skip_list.txt')) == [
        MISSING, TRUNCATED, MISLABELLED]
    help_text = subprocess.run([sys.executable, TOOL, '--help'],
                               capture_output=True, text=True).stdout
    assert 'default: 0.5' in help_text and '--skip-mismatched' in help_text


def test_truncated_video_with_its_index_first(broken, tmp_path):
    """A file cut short whose index (moov) comes first opens, with the
    duration of the whole video: the decode of its last frames fails."""
    import av
    path, cut = str(tmp_path / 'fast.mp4'), str(tmp_path / 'cut.mp4')
    with av.open(osp.join(broken['videos'], f'{GOOD}.mp4')) as src, \
            av.open(path, 'w', options=dict(movflags='faststart')) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = open(path, 'rb').read()
    open(cut, 'wb').write(data[:int(len(data) * 0.9)])
    tool = load_tool()
    whole = tool.probe_video(path)
    assert whole['last_frame'] == whole['frames'] - 1
    with pytest.raises(ValueError, match='pyav: .*truncated or corrupt'):
        tool.probe_video(cut)


def demo_config(broken, work_dir, **train_dataset):
    """The demo config on the broken data: 1 epoch, batch 1, no workers,
    no validation."""
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader = copy.deepcopy(cfg.train_dataloader)
    cfg.train_dataloader.update(batch_size=1, num_workers=0,
                                persistent_workers=False)
    cfg.train_dataloader.dataset.update(
        ann_file=broken['ann'], data_prefix=dict(video=broken['videos']),
        **train_dataset)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=100)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    return cfg


def train(cfg):
    from mmengine.runner import Runner
    torch.set_num_threads(1)
    runner = Runner.from_cfg(own_logger(cfg, 'check_dataset'))
    runner.train()
    return runner, runner_log(runner)


def test_train_with_the_skip_list(broken):
    skip_list = str(broken['out'] / 'skip_list.txt')
    runner, log = train(demo_config(broken, broken['root'] / 'train_skip',
                                    skip_list=skip_list))
    assert runner.train_loop.iter == 1  # the one usable training video
    assert (f'left out 2 of 3 video(s) of subset \'training\' of '
            f'{broken["ann"]} listed in {skip_list}: {MISSING}, '
            f'{TRUNCATED}') in log
    # the segment past the annotated duration, named in the log
    end = 2 * broken['real']
    assert (f'{MISLABELLED}: [{end - 1:.1f}, {end + 1.5:.1f}] clipped to '
            f'[{end - 1:.1f}, {end:.1f}] (duration {end:.1f} s)') in log
    assert ('3 of the 4 classes have no segment in subset \'training\' '
            'of') in log and 'training never sees them: class_1, class_2, '\
        'class_3' in log
    assert 'Epoch(train) [1][1/1]' in log


def test_train_skips_undecodable_videos(broken):
    runner, log = train(demo_config(
        broken, broken['root'] / 'train_undecodable', skip_missing=True,
        skip_undecodable=True))
    assert runner.train_loop.iter == 2  # ran to the end of the epoch
    assert f'skipped 1 missing file(s): {broken["videos"]}/{MISSING}' in log
    assert (f'skip_undecodable: skipped video {TRUNCATED} '
            f'({broken["videos"]}/{TRUNCATED}.mp4): TALVideoInit failed: '
            'OSError') in log
    assert 'sample(s) skipped so far' in log
    dataset = runner.train_dataloader.dataset
    assert dataset.num_skipped >= 1
    assert set(dataset.skipped_videos) == {TRUNCATED}


def build_dataset(broken, **kw):
    init_default_scope('mmaction')
    cfg = Config.fromfile(CONFIG)
    pipeline = cfg.test_pipeline if kw.get('test_mode') else \
        cfg.train_pipeline
    return DATASETS.build(dict(
        type='TALDataset', ann_file=broken['ann'], classes=cfg.classes,
        data_prefix=dict(video=broken['videos']), skip_missing=True,
        pipeline=pipeline, **kw))


def log_to(tmp_path, name):
    """A current MMEngine logger writing to a file; its path."""
    path = str(tmp_path / f'{name}.log')
    MMLogger.get_instance(name, log_file=path)
    return path


def test_undecodable_without_skipping_names_the_fix(broken):
    ds = build_dataset(broken)
    idx = [ds.get_data_info(i)['video_id'] for i in range(len(ds))].index(
        TRUNCATED)
    with pytest.raises(OSError, match='cannot decode video') as err:
        ds[idx]
    note = '\n'.join(getattr(err.value, '__notes__', []))
    if sys.version_info >= (3, 11):
        assert f'video {TRUNCATED}' in note
        assert 'skip_undecodable=True' in note and 'skip_list' in note


def test_test_mode_stand_in_reaches_no_evaluation(broken, tmp_path):
    """In test mode a skipped window is an error in the log; its stand-in
    sample (another video's frames) is marked ``skipped`` and none of its
    detections reach the metric."""
    from re2tal_mm.evaluation import TALMetric

    from mmaction.registry import MODELS
    log = log_to(tmp_path, 'test_mode_skip')
    ds = build_dataset(broken, test_mode=True, skip_undecodable=True,
                       sliding_window=True, window_overlap=0.5)
    vids = [ds.get_data_info(i)['video_id'] for i in range(len(ds))]
    assert MISSING not in vids
    stand_in = ds[vids.index(TRUNCATED)]
    meta = stand_in['data_samples'].metainfo
    assert meta['stand_in_for'] == TRUNCATED and meta['skipped']
    assert meta['video_id'] != TRUNCATED
    text = open(log).read()
    assert 'ERROR' in text and f'video {TRUNCATED}' in text
    assert 'left out of the evaluation' in text
    assert ds.num_skipped == 1
    cfg = Config.fromfile(CONFIG)
    cfg.model.post_processor.score_thr = 0.0
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    normal = ds[vids.index(GOOD)]
    with torch.no_grad():
        out = model.test_step(dict(
            inputs=[normal['inputs'], stand_in['inputs']],
            data_samples=[normal['data_samples'],
                          stand_in['data_samples']]))
    # the model predicts on the stand-in's frames (another video's) ...
    assert len(out[1].pred_instances.scores) > 0
    metric = TALMetric()
    metric.process({}, out)
    # ... and the metric keeps only the real sample's detections
    assert [r['video_id'] for r in metric.results] == [GOOD]
    assert len(metric.results[0]['scores']) == len(
        out[0].pred_instances.scores)


def test_skip_list_forms(broken, tmp_path):
    path = tmp_path / 'skip.txt'
    path.write_text(f'# from check_dataset\n{MISSING}\n\n{TRUNCATED}  # cut\n')
    assert read_skip_list(str(path)) == [MISSING, TRUNCATED]
    assert read_skip_list((MISSING, )) == [MISSING]
    with pytest.raises(FileNotFoundError, match='check_dataset.py'):
        read_skip_list(str(tmp_path / 'nope.txt'))
    ds = build_dataset(broken, skip_list=[MISSING, TRUNCATED])
    assert [ds.get_data_info(i)['video_id'] for i in range(len(ds))] == [
        MISLABELLED, GOOD]
    with pytest.raises(ValueError, match=r'no video of .* is left: 4 in it, '
                       r'0 missing, 4 in the skip_list'):
        build_dataset(broken, skip_list=[MISSING, TRUNCATED, MISLABELLED,
                                         GOOD])


def test_clipping_message_names_videos_and_times(tmp_path):
    db = {'video_test_0000123': dict(duration=128.5, annotations=[
        dict(segment=[120.3, 131.0], label='a'),
        dict(segment=[-2.0, 4.25], label='a'),
        dict(segment=[130.0, 140.0], label='a'),
        dict(segment=[10.0, 12.0], label='a')]),
        'b': dict(duration=10.0, annotations=[
            dict(segment=[5.0, 5.0], label='a')] + [
            dict(segment=[9.0, 11.0 + i], label='a') for i in range(3)])}
    records = []

    class Records(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger('test_clipping_message')
    logger.addHandler(Records())
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a logger given: no warning
        assert clean_segments(copy.deepcopy(db), 'gt.json', logger) == (6, 2)
    assert len(records) == 1  # one message
    lines = records[0].splitlines()
    assert lines[0] == ('gt.json: 6 segment(s) outside their video were '
                        'clipped, 2 with end <= start (after clipping) were '
                        'dropped, in 2 video(s):')
    assert lines[1:6] == [
        '  video_test_0000123: [120.3, 131.0] clipped to [120.3, 128.5] '
        '(duration 128.5 s)',
        '  video_test_0000123: [-2.0, 4.25] clipped to [0.0, 4.25] '
        '(duration 128.5 s)',
        '  video_test_0000123: [130.0, 140.0] dropped (outside the video) '
        '(duration 128.5 s)',
        '  b: [5.0, 5.0] dropped (end <= start) (duration 10.0 s)',
        '  b: [9.0, 11.0] clipped to [9.0, 10.0] (duration 10.0 s)']
    assert lines[6] == '  ... and 2 more'
    assert 'check_dataset.py' in lines[7]
    # without a logger: a UserWarning, and the current MMEngine logger's
    # log file gets it too
    path = log_to(tmp_path, 'test_clipping_message_file')
    with pytest.warns(UserWarning, match='6 segment.*clipped, 2 .*dropped'):
        clean_segments(copy.deepcopy(db), 'gt.json')
    assert lines[1] in open(path).read()


def test_feature_files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / 'ok.npy', rng.random((20, 8), dtype=np.float32))
    np.save(tmp_path / 'flat.npy', rng.random((20, ), dtype=np.float32))
    np.save(tmp_path / 'wide.npy', rng.random((20, 9), dtype=np.float32))
    short = rng.random((5, 8), dtype=np.float32)
    np.save(tmp_path / 'short.npy', short)
    (tmp_path / 'junk.npy').write_bytes(b'not numpy')
    db = {v: dict(subset='training', duration=8.0, fps=10.0,
                  annotations=[dict(segment=[1.0, 2.0], label='a')])
          for v in ('ok', 'flat', 'wide', 'short', 'junk', 'gone')}
    ann = tmp_path / 'gt.json'
    ann.write_text(json.dumps(dict(database=db)))
    cfg = tmp_path / 'feat_cfg.py'
    cfg.write_text(
        'train_dataloader = dict(dataset=dict(type="TALDataset", '
        f'ann_file={str(ann)!r}, modality="Feature", '
        f'data_prefix=dict(feature={str(tmp_path)!r}), pipeline=['
        'dict(type="LoadTALFeature", feature_stride=4)]))\n')
    code = load_tool().main([str(cfg), '--split', 'train', '--workers', '0',
                             '--no-progress', '--out-dir',
                             str(tmp_path / 'out')])
    assert code == 1
    rows = {r['video_id']: r for r in json.loads(
        (tmp_path / 'out' / 'report.json').read_text())['videos']}
    assert rows['ok']['status'] == 'ok'
    assert (rows['ok']['steps'], rows['ok']['channels']) == (20, 8)
    assert rows['ok']['duration'] == pytest.approx(8.0)
    assert rows['short']['status'] == 'duration_mismatch'
    assert 'T x C' in rows['flat']['error']
    assert 'cannot be batched' in rows['wide']['error']
    assert 'cannot load' in rows['junk']['error']
    assert rows['gone']['status'] == 'missing'
    assert read_skip_list(str(tmp_path / 'out' / 'skip_list.txt')) == [
        'flat', 'wide', 'junk', 'gone']

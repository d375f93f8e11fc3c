"""Your own dataset (docs/custom_dataset.md): a CSV of ``video, start, end,
label`` and a folder of videos -> tools/data/convert_csv.py ->
tools/data/check_dataset.py -> the template config trains one epoch and
tests to an mAP; bad rows and files are errors naming them."""
import csv
import importlib.util
import json
import math
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config

from re2tal_mm.datasets.custom_csv import (convert_segment_csv,
                                           read_segment_csv, split_videos)

from .conftest import REPO

TEMPLATE = osp.join(REPO, 'configs', 're2tal',
                    're2tal_swin-demo-p244-w877_1xb2-40e_custom-64x64.py')
NUM_STEPS, SIZE = 16, 32


def load_tool(*parts):
    path = osp.join(REPO, 'tools', *parts)
    spec = importlib.util.spec_from_file_location(parts[-1][:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_csv(path, rows, header=('video', 'start', 'end', 'label')):
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope='module')
def user_data(tmp_path_factory):
    """A user's folder: 4 videos named by the user (from the synthetic
    generator, 5 fps) and their CSV (with a ``split`` column, labels named
    by the user, some videos given without extension)."""
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    root = tmp_path_factory.mktemp('custom')
    ann = make_synthetic_dataset(str(root / 'syn'), num_videos=4,
                                 num_classes=2, fps=5, min_duration=14,
                                 max_duration=16)
    truth = json.load(open(ann))['database']
    videos = root / 'data' / 'videos'
    videos.mkdir(parents=True)
    names = {'class_0': 'pour', 'class_1': 'stir'}
    rows, expected = [], {}
    for k, (vid, info) in enumerate(truth.items()):
        new = f'cam{k}_take'
        shutil.copy(root / 'syn' / 'videos' / f'{vid}.mp4',
                    videos / f'{new}.mp4')
        expected[new] = dict(info, annotations=[
            dict(segment=a['segment'], label=names[a['label']])
            for a in info['annotations']])
        split = 'validation' if info['subset'] == 'validation' \
            else 'training'
        name = new + ('.mp4' if k % 2 else '')
        for a in info['annotations']:
            rows.append([name, *a['segment'], names[a['label']], split])
        assert info['annotations']
    # a video without actions: a row with empty start, end and label
    shutil.copy(videos / 'cam0_take.mp4', videos / 'idle.mp4')
    rows.append(['idle.mp4', '', '', '', 'training'])
    expected['idle'] = dict(expected['cam0_take'], annotations=[],
                            subset='training')
    csv_file = write_csv(root / 'data' / 'segments.csv', rows,
                         ('video', 'start', 'end', 'label', 'split'))
    return dict(root=root, data=root / 'data', videos=str(videos),
                csv=csv_file, expected=expected)


def test_convert_csv_tool(user_data, capsys):
    out = str(user_data['data'] / 'annotations.json')
    load_tool('data', 'convert_csv.py').main(
        [user_data['csv'], user_data['videos'], out, '--subset-column',
         'split'])
    printed = capsys.readouterr()
    text = printed.out + printed.err
    data = json.load(open(out))
    assert data['classes'] == ['pour', 'stir']  # sorted labels
    assert 'num_classes = 2' in text
    assert 'training: 4 videos' in text and 'validation: 1 videos' in text
    expected = user_data['expected']
    assert set(data['database']) == set(expected)
    for vid, info in data['database'].items():
        want = expected[vid]
        assert info['subset'] == want['subset']
        # from the video's header: frames / fps as the generator wrote them
        assert info['fps'] == 5.0
        assert info['duration'] == pytest.approx(want['duration'], abs=1e-9)
        assert info['annotations'] == want['annotations']


def test_split_ratio_and_class_file(user_data, tmp_path, capsys):
    db, classes, suffix = convert_segment_csv(
        user_data['csv'], user_data['videos'],
        classes=['stir', 'pour', 'wipe'], val_ratio=0.5, seed=3)
    assert classes == ['stir', 'pour', 'wipe'] and suffix == '.mp4'
    subsets = [info['subset'] for info in db.values()]
    assert sorted(subsets) == ['training'] * 3 + ['validation'] * 2
    again, _, _ = convert_segment_csv(user_data['csv'], user_data['videos'],
                                      val_ratio=0.5, seed=3)
    assert [v['subset'] for v in again.values()] == subsets  # seeded
    assert split_videos(['b', 'a', 'c'], 0.01) == split_videos(
        ['c', 'a', 'b'], 0.01)
    assert sorted(split_videos(['a', 'b'], 0.01).values()) == [
        'training', 'validation']
    assert 'of 3 classes present' in capsys.readouterr().out


@pytest.mark.parametrize('row, message', [
    (['cam0_take', 'x', '3', 'pour'], "line 3: start 'x' is not a number"),
    (['cam0_take', '4', '4', 'pour'], 'line 3: segment [4.0, 4.0]'),
    (['cam0_take', '-1', '4', 'pour'], 'needs 0 <= start < end'),
    (['nope', '1', '4', 'pour'], 'line 3: video file'),
    (['cam0_take', '1', '4', ''], 'line 3: empty label'),
    (['', '1', '4', 'pour'], 'line 3: empty video'),
    (['cam0_take', '100', '104', 'pour'], 'starts after the end of'),
    (['cam0_take', '1', '4', 'jump'], "line 3: label 'jump'"),
])
def test_bad_rows_are_named(user_data, tmp_path, row, message):
    path = write_csv(tmp_path / 'bad.csv',
                     [['cam0_take', '1', '2', 'pour'], row])
    with pytest.raises((ValueError, OSError)) as err:
        convert_segment_csv(path, user_data['videos'],
                            classes=['pour', 'stir'])
    assert message in str(err.value) and 'bad.csv' in str(err.value)


def test_bad_files_are_named(user_data, tmp_path):
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['end'\]"):
        read_segment_csv(write_csv(tmp_path / 'a.csv', [['v', '1', 'x']],
                                   ('video', 'start', 'label')))
    path = write_csv(tmp_path / 'b.csv', [['v', 1, 2, 'a', 'training'],
                                          ['v', 3, 4, 'a', 'validation']],
                     ('video', 'start', 'end', 'label', 'subset'))
    with pytest.raises(ValueError, match="line 3: video 'v' in subset "
                       "'validation', but in 'training' at line 2"):
        read_segment_csv(path, 'subset')
    broken = tmp_path / 'videos'
    broken.mkdir()
    (broken / 'junk.mp4').write_bytes(b'not a video' * 20)
    path = write_csv(tmp_path / 'c.csv', [['junk.mp4', 1, 2, 'a']])
    with pytest.raises(IOError, match='cannot read the header of video .*'
                       'junk.mp4'):
        convert_segment_csv(path, str(broken))


def small_config(user_data, work_dir):
    """The template, with its data_root, at 16 frames x 32 x 32, one epoch
    (a test after it)."""
    cfg = Config.fromfile(TEMPLATE)
    cfg.data_root = str(user_data['data'])
    cfg.num_classes = 2
    cfg.model.head.num_classes = 2
    cfg.work_dir = str(work_dir)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg[key]
        dl.update(num_workers=0, persistent_workers=False)
        for t in dl.dataset.pipeline:
            if t['type'] == 'TALWindowSample':
                t['num_steps'] = NUM_STEPS
            elif t['type'] == 'Resize':
                t['scale'] = (SIZE, SIZE)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=1)
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.env_cfg = dict(cudnn_benchmark=False,
                       mp_cfg=dict(mp_start_method='fork',
                                   opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))
    cfg.visualizer = dict(type='ActionVisualizer', vis_backends=[])
    cfg.log_level = 'WARNING'
    return cfg


def test_csv_to_trained_model_with_map(user_data, tmp_path, capsys):
    from mmengine.registry import RUNNERS

    # 1. the CSV -> annotations.json where the template looks for it
    out = str(user_data['data'] / 'annotations.json')
    load_tool('data', 'convert_csv.py').main(
        [user_data['csv'], user_data['videos'], out, '--subset-column',
         'split'])
    # 2. check_dataset on the template config (its data_root moved)
    report = tmp_path / 'check'
    status = load_tool('data', 'check_dataset.py').main(
        [TEMPLATE, '--out-dir', str(report), '--no-progress', '--workers', '1',
         '--cfg-options', f'data_root={user_data["data"]}'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    rows = json.load(open(report / 'report.json'))
    rows = rows['videos'] if isinstance(rows, dict) else rows
    assert sorted(r['video_id'] for r in rows) == sorted(
        user_data['expected'])
    assert {r['status'] for r in rows} == {'ok'}
    assert (report / 'skip_list.txt').read_text().strip() == ''
    # 3. one epoch of training, then the test loop scores it
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = small_config(user_data, tmp_path / 'work')
    runner = RUNNERS.build(cfg)  # as tools/train.py: the config's runner
    # (DataRootRunner: data_root moves every dataset and the metric)
    train_set = runner.train_dataloader.dataset
    assert train_set.classes == ['pour', 'stir']
    assert len(train_set) == 4  # the video without actions trains too
    runner.train()
    assert osp.isfile(tmp_path / 'work' / 'epoch_1.pth')
    metrics = runner.test()
    maps = {k: v for k, v in metrics.items() if 'mAP' in k}
    assert maps, metrics
    print('mAP after one epoch:', maps)
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in maps.values())

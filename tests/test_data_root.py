"""One override moves the data: ``--cfg-options data_root=DIR``.

The config is loaded and overridden exactly as MMAction2's ``tools/train.py``
and ``tools/test.py`` do (``Config.fromfile``, ``merge_from_dict``,
``RUNNERS.build`` for a config with ``runner_type``); the Runner's train,
validation and test dataloaders and the evaluators are built, and every path
they read must lie in the new folder. ``TALMetric`` without ``ann_file``
scores against the annotation file of the dataset it evaluates.
"""
import json
import logging
import os.path as osp
import shutil

import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger

from .conftest import REPO

DEMO = osp.join(REPO, 'configs', 're2tal',
                're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
THUMOS = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-tiny-p244-w877_2xb2-1024x224-amp-ema_'
                  'thumos14.py')


@pytest.fixture(scope='module')
def moved_data(tmp_path_factory):
    """A tiny synthetic dataset, generated in one folder and moved to
    another (the old one is gone)."""
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    first = tmp_path_factory.mktemp('generated')
    make_synthetic_dataset(str(first / 'syn'), num_videos=3, num_classes=4,
                           min_duration=8, max_duration=10)
    moved = tmp_path_factory.mktemp('elsewhere') / 'my data'
    shutil.move(str(first / 'syn'), str(moved))
    return moved


def train_py_config(path, work_dir, options):
    """The config as ``tools/train.py CONFIG --cfg-options ...`` makes it."""
    cfg = Config.fromfile(path)
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    cfg.merge_from_dict(options)
    return cfg


def build_runner(cfg):
    """As ``tools/train.py`` / ``tools/test.py`` build it."""
    from mmengine.runner import Runner

    from mmaction.registry import RUNNERS
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def inside(path, folder):
    return osp.commonpath([osp.abspath(path), str(folder)]) == str(folder)


def infos(dataset):
    """The dataset's entries (``data_list`` is serialized away)."""
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_one_key_moves_the_demo_data(moved_data, tmp_path, monkeypatch):
    from re2tal_mm.engine import DataRootRunner
    monkeypatch.chdir(tmp_path)  # no data/synthetic here
    cfg = train_py_config(DEMO, tmp_path / 'work',
                          {'data_root': str(moved_data)})
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].update(num_workers=0, persistent_workers=False)
    runner = build_runner(cfg)
    assert isinstance(runner, DataRootRunner)
    datasets = {
        'train': runner.train_dataloader.dataset,
        'val': runner.val_loop.dataloader.dataset,
        'test': runner.test_loop.dataloader.dataset,
    }
    for split, ds in datasets.items():
        assert inside(ds.ann_file, moved_data), (split, ds.ann_file)
        assert inside(ds.data_prefix['video'], moved_data), split
        assert len(ds) > 0
        for info in infos(ds):
            assert inside(info['filename'], moved_data), info['filename']
            assert osp.isfile(info['filename'])
    # the metrics score against the dataset's own annotation file
    for loop in (runner.val_loop, runner.test_loop):
        (metric, ) = loop.evaluator.metrics
        assert metric.ann_file is None
        assert metric.ground_truth_file() == loop.dataloader.dataset.ann_file
        assert inside(metric.ground_truth_file(), moved_data)
    # the config the Runner dumps into the work_dir says so as well
    assert runner.cfg.train_dataloader.dataset.data_root == str(moved_data)


def test_paper_config_moves_with_one_key(moved_data, tmp_path, monkeypatch):
    """THUMOS-14 recipe: classes read from the moved annotation file, the
    train / test subsets, the evaluator, no model trained."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / 'thumos'
    shutil.copytree(moved_data / 'videos', root / 'videos')
    with open(moved_data / 'annotations.json') as f:
        data = json.load(f)
    for i, info in enumerate(data['database'].values()):
        info['subset'] = 'validation' if i < 2 else 'test'
    del data['classes']  # as the converter writes it: labels only
    (root / 'thumos14_gt.json').write_text(json.dumps(data))
    cfg = train_py_config(THUMOS, tmp_path / 'work',
                          {'data_root': str(root)})
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].update(num_workers=0, persistent_workers=False)
    # not the model under test: a tiny backbone instead of Swin-T
    cfg.model.backbone.update(arch=dict(embed_dims=24, depths=[2],
                                        num_heads=[3]), out_indices=(0, ))
    cfg.model.neck.in_channels = 24
    runner = build_runner(cfg)
    train = runner.train_dataloader.dataset
    val = runner.val_loop.dataloader.dataset
    assert train.ann_file == val.ann_file == str(root / 'thumos14_gt.json')
    assert {d['video_id'] for d in infos(train)} == set(
        list(data['database'])[:2])
    assert val.classes == train.classes == sorted(
        {a['label'] for v in data['database'].values()
         for a in v['annotations']})
    assert infos(val) and all(inside(d['filename'], root)
                              for d in infos(val))
    (metric, ) = runner.val_loop.evaluator.metrics
    assert metric.ground_truth_file() == str(root / 'thumos14_gt.json')
    assert metric.subset == 'test'


def test_without_the_override_the_default_folder_is_read(tmp_path,
                                                         monkeypatch):
    from re2tal_mm.engine import apply_data_root
    cfg = Config.fromfile(DEMO)
    filled = apply_data_root(cfg)
    assert filled == ['train_dataloader.dataset', 'val_dataloader.dataset',
                      'test_dataloader.dataset']
    assert cfg.val_dataloader.dataset.data_root == 'data/synthetic'
    assert cfg.val_dataloader.dataset.ann_file == 'annotations.json'


def test_own_data_root_and_wrappers():
    """A dataset's own data_root is kept; wrapped datasets get it; other
    dataset types are left alone."""
    from re2tal_mm.engine import apply_data_root
    cfg = Config(dict(
        data_root='/new',
        train_dataloader=dict(dataset=dict(
            type='RepeatDataset', times=2,
            dataset=dict(type='TALDataset', ann_file='a.json'))),
        val_dataloader=dict(dataset=dict(type='TALDataset', ann_file='a',
                                         data_root='/mine')),
        test_dataloader=dict(dataset=dict(type='VideoDataset',
                                          ann_file='k400.txt'))))
    assert apply_data_root(cfg) == ['train_dataloader.dataset.dataset']
    assert cfg.train_dataloader.dataset.dataset.data_root == '/new'
    assert 'data_root' not in cfg.train_dataloader.dataset
    assert cfg.val_dataloader.dataset.data_root == '/mine'
    assert 'data_root' not in cfg.test_dataloader.dataset
    assert apply_data_root(Config(dict(train_dataloader=dict(
        dataset=dict(type='TALDataset'))))) == []  # no data_root: nothing


def test_metric_without_ground_truth_says_what_to_give():
    from re2tal_mm.evaluation import TALMetric
    metric = TALMetric()
    metric.dataset_meta = dict(classes=('a', ))
    with pytest.raises(ValueError, match=r'give it ann_file=\.\.\.'):
        metric.compute_metrics([])


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))


def test_metric_names_a_class_missing_from_the_split(tmp_path):
    """A class of the dataset without ground truth in the evaluated subset
    is said to be absent from the split (not 'unknown'), its predictions
    counted and left out; said as a warning once, then at info level."""
    import numpy as np

    from re2tal_mm.evaluation import TALMetric
    ann = tmp_path / 'gt.json'
    ann.write_text(json.dumps(dict(database=dict(
        a=dict(subset='validation', duration=20.0,
               annotations=[dict(segment=[2.0, 6.0], label='run')]),
        b=dict(subset='training', duration=20.0,
               annotations=[dict(segment=[1.0, 3.0], label='jump')])))))
    logger = MMLogger.get_instance('test_missing_class', log_level='INFO')
    handler = _Records()
    logger.addHandler(handler)
    metric = TALMetric(subset='validation', nms=None)
    metric.dataset_meta = dict(classes=('run', 'jump'), ann_file=str(ann))
    results = [dict(video_id='a', segments=np.array([[2., 6.], [8., 9.],
                                                     [1., 2.]]),
                    scores=np.array([.9, .8, .7]),
                    labels=np.array([0, 1, 1]))]
    res = metric.compute_metrics(results)
    assert res['average_mAP'] == 1.0  # 'jump' does not lower the mAP
    metric.compute_metrics(results)
    said = [(level, m) for level, m in handler.records if 'jump' in m]
    assert said[0][0] == 'WARNING' and said[1][0] == 'INFO'
    text = said[0][1]
    assert "1 of the 2 classes have no ground-truth segment in subset " \
        "'validation' of " in text
    assert 'absent from this split' in text and "'jump' (2)" in text
    assert 'mean over the 1 classes present' in text
    assert not any('not a ground-truth class' in m
                   for _, m in handler.records)

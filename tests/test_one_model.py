"""One model, one truth: the rewiring a model was trained with follows it into
checkpoints, ``mim test`` (Runner.test) and ``localize_video``, and both give
the same detections on the same video."""
import copy
import json
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

import re2tal_mm  # noqa: F401
from re2tal_mm.engine import META_KEY, RewireBackboneHook
from re2tal_mm.rewiring import is_rewired, rewiring_spec

from .conftest import REPO, own_logger, runner_log

CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')


def demo_config(data, work_dir, **model):
    """The demo config on ``data``: one epoch, no workers, no validation."""
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.model.update(model)
    ann, videos = str(data / 'annotations.json'), str(data / 'videos')
    for key in ('train_dataloader', 'test_dataloader'):
        cfg[key] = copy.deepcopy(cfg[key])
        cfg[key].update(num_workers=0, persistent_workers=False)
        cfg[key].dataset.update(ann_file=ann,
                                data_prefix=dict(video=videos))
    cfg.train_dataloader.batch_size = 1
    cfg.test_dataloader.dataset.subset = 'validation'
    cfg.test_evaluator = dict(cfg.test_evaluator, ann_file=ann,
                              out_file=str(work_dir / 'results.json'))
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=100)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The demo model trained rewired (construction time) for one epoch."""
    from mmengine.runner import Runner

    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('one_model')
    data = root / 'syn'
    make_synthetic_dataset(str(data), num_videos=3, num_classes=4, seed=0,
                           min_duration=10, max_duration=14, val_ratio=0.34)
    cfg = demo_config(data, root / 'train')
    Runner.from_cfg(cfg).train()
    ckpt = str(root / 'train' / 'epoch_1.pth')
    val = [v for v, info in json.load(open(data / 'annotations.json'))[
        'database'].items() if info['subset'] == 'validation']
    assert len(val) == 1
    return SimpleNamespace(root=root, data=data, ckpt=ckpt, video_id=val[0])


def test_checkpoint_records_the_rewiring(trained):
    ckpt = torch.load(trained.ckpt, map_location='cpu', weights_only=False)
    assert ckpt['meta'][META_KEY] == dict(mode='reversible')


def runner_test(trained, name, **model):
    from mmengine.runner import Runner
    work = trained.root / name
    cfg = demo_config(trained.data, work, **model)
    cfg.load_from = trained.ckpt
    runner = Runner.from_cfg(own_logger(cfg, name))
    runner.test()
    results = json.load(open(work / 'results.json'))['results']
    return runner, results[trained.video_id], runner_log(runner)


def test_localize_video_equals_mim_test(trained):
    """``localize_video`` with a config that would run the model un-rewired
    still runs it as trained (from the checkpoint's meta), and its detections
    equal Runner.test's on the same video."""
    from re2tal_mm.apis import init_localizer, localize_video
    runner, expected, log = runner_test(trained, 'test_rewired')
    assert is_rewired(runner.model)
    assert 'trained rewired' not in log  # no mismatch warning
    cfg = Config.fromfile(CONFIG)
    cfg.model.rewire = None
    model = init_localizer(cfg, trained.ckpt)
    assert rewiring_spec(model) == dict(mode='reversible')
    video = str(trained.data / 'videos' / f'{trained.video_id}.mp4')
    got = localize_video(model, video, score_thr=0.0, progress=False)
    assert len(expected) > 10
    assert len(got['results']) == len(expected)
    for g, e in zip(got['results'], expected):
        assert g['label'] == e['label']
        assert g['score'] == pytest.approx(e['score'], abs=1e-5)
        assert g['segment'] == pytest.approx(e['segment'], abs=1e-4)
    # the explicit override runs another function: other scores
    plain = init_localizer(cfg, trained.ckpt, rewiring=False)
    assert not is_rewired(plain)
    other = localize_video(plain, video, score_thr=0.0, progress=False)
    assert max(abs(a['score'] - b['score']) for a, b in
               zip(other['results'], got['results'])) > 1e-4


def test_mim_test_unrewired_config_warns_loudly(trained):
    runner, _, log = runner_test(trained, 'test_plain', rewire=None)
    assert not is_rewired(runner.model)
    assert 'trained rewired reversible' in log
    assert "rewire={'mode': 'reversible'}" in log


def test_unrecorded_checkpoint_runs_as_config_says(trained, tmp_path):
    from mmengine.logging import MMLogger

    from re2tal_mm.apis import init_localizer
    ckpt = torch.load(trained.ckpt, map_location='cpu', weights_only=False)
    del ckpt['meta'][META_KEY]
    old = str(tmp_path / 'old.pth')
    torch.save(ckpt, old)
    logger = MMLogger.get_instance('one_model_test', log_file=str(
        tmp_path / 'log.txt'))
    model = init_localizer(CONFIG, old)
    assert rewiring_spec(model) == dict(mode='reversible')
    cfg = Config.fromfile(CONFIG)
    cfg.model.rewire = None
    assert not is_rewired(init_localizer(cfg, old))
    text = open(tmp_path / 'log.txt').read()
    assert 'does not record how it was trained' in text
    assert logger is MMLogger.get_current_instance()


def test_construction_and_hook_give_the_same_model():
    from mmengine.registry import init_default_scope

    from mmaction.registry import MODELS
    init_default_scope('mmaction')
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(0)
    built = MODELS.build(cfg.model).double()
    cfg.model.rewire = None
    torch.manual_seed(0)
    hooked = MODELS.build(cfg.model).double()
    assert not is_rewired(hooked)
    RewireBackboneHook(mode='reversible').before_run(
        SimpleNamespace(model=hooked))
    assert rewiring_spec(built) == rewiring_spec(hooked)
    x = torch.randn(1, 3, 16, 64, 64, dtype=torch.float64)
    grads = []
    for model in (built, hooked):
        model.train()
        torch.manual_seed(1)
        out = model.backbone(x)
        out.square().sum().backward()
        grads.append([p.grad for p in model.backbone.parameters()])
        assert all(g is not None for g in grads[-1])
    for a, b in zip(*grads):
        assert torch.equal(a, b)

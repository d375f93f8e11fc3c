"""Every shipped config builds and trains one iteration on CPU.

Each config in ``configs/re2tal/`` is loaded as a user would load it, then
shrunk for a 2-core CPU (16 frames at 32x32, short detector grid, no
pretrained weights, AMP replaced by a plain
``OptimWrapper``) without otherwise changing its structure: same model types,
hooks (reversible rewiring, EMA), optimizer constructor and pipelines. Its
dataset is built on a tiny synthetic copy of the data (2 short videos with the
config's number of classes, in the converters' ActivityNet-style layout) and
an MMEngine ``Runner`` runs one training iteration.

Feature-mode configs (``*-feature_*.py``: no backbone, ``.npy`` features) get
their own path: the same runner iteration on 2 fake feature files of the
config's channel count, the model unchanged.
"""
import glob
import json
import math
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 're2tal', '*.py')))
FEATURE_CONFIGS = [p for p in CONFIGS if '-feature_' in osp.basename(p)]
VIDEO_CONFIGS = [p for p in CONFIGS if p not in FEATURE_CONFIGS]
NUM_FRAMES = 16
CROP = 32
FPS = 5


def test_all_expected_configs_present():
    names = {osp.basename(p) for p in CONFIGS}
    for key in ('swin-tiny', 'slowfast-r101'):
        for data in ('thumos14', 'anet1.3'):
            assert any(key in n and n.endswith(f'{data}.py') for n in names)
    assert any('from-mmaction' in n for n in names)


def test_metafile_and_readme_list_every_config():
    import yaml
    folder = osp.join(REPO, 'configs', 're2tal')
    with open(osp.join(folder, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    listed = {m['Config'] for m in meta['Models']}
    assert listed == {osp.relpath(p, REPO) for p in CONFIGS}
    for m in meta['Models']:
        assert m['In Collection'] == 'Re2TAL'
        for r in m.get('Results', []):
            assert r['Task'] == 'Temporal Action Localization'
    with open(osp.join(folder, 'README.md')) as f:
        readme = f.read()
    assert 'not reproduced' in readme and '64.9' in readme
    assert '37.01' in readme
    for p in CONFIGS:
        assert osp.basename(p) in readme


@pytest.fixture(scope='module')
def fake_data(tmp_path_factory):
    """``num_classes -> (ann_file, video_dir)``: 2 synthetic videos each."""
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    cache = {}

    def get(num_classes):
        if num_classes not in cache:
            out = str(tmp_path_factory.mktemp(f'data{num_classes}'))
            ann = make_synthetic_dataset(out, num_videos=2,
                                         num_classes=num_classes, fps=FPS,
                                         min_duration=12, max_duration=14)
            with open(ann) as f:
                data = json.load(f)
            assert len(data['classes']) == num_classes
            cache[num_classes] = (ann, osp.join(out, 'videos'))
        return cache[num_classes]

    return get


def _shrink_pipeline(pipeline):
    for t in pipeline:
        if t['type'] == 'TALWindowSample':
            t['num_steps'] = NUM_FRAMES
        elif t['type'] == 'Resize':
            t['scale'] = (CROP, CROP) if t.get('keep_ratio') is False \
                else (-1, CROP + 8)
        elif t['type'] == 'RandomCrop':
            t['size'] = CROP
        elif t['type'] == 'CenterCrop':
            t['crop_size'] = CROP


def _window_seconds(pipeline):
    (t, ) = [t for t in pipeline if t['type'] == 'TALWindowSample']
    stride = t.get('frame_stride', 1)
    if t.get('target_fps'):
        stride = max(1, round(FPS / t['target_fps']))
    return NUM_FRAMES * stride / FPS


def shrink(cfg, ann_file, video_dir, work_dir):
    """The config, made small enough for one CPU iteration."""
    cfg.work_dir = work_dir
    cfg.load_from = None
    cfg.resume = False
    model = cfg.model
    backbone = model.get('backbone')
    if backbone is not None:
        backbone['pretrained'] = None
        if backbone['type'] == 'ResNet3dSlowFast':
            # depth 101 is kept: ~10 s per iteration at 16x32x32
            for key in ('slow_pathway', 'fast_pathway'):
                backbone[key]['pretrained'] = None
        if backbone['type'] == 'ClipBatchedViT':
            # 2 blocks (the temporal adapters in the last one when the
            # config leaves the first half without), 2 clips of 8 frames
            half = backbone.get('adapter_blocks') is not None
            backbone.update(depth=2, num_frames=NUM_FRAMES // 2)
            if half:
                backbone['adapter_blocks'] = [1]
        stride_t = 1 if backbone['type'] == 'ResNet3dSlowFast' else 2
        if 'feat_len' in model:
            model['feat_len'] = NUM_FRAMES // stride_t
            if 'max_seq_len' in model.neck:  # OpenTAD's encoder: positions
                # of the input padded to the largest stride (2 ** arch[2])
                big = 2 ** model.neck.get('arch', (2, 2, 5))[2]
                model.neck['max_seq_len'] = -(-model['feat_len'] // big) * big
    # ActivityNet recipe: fuse with a fake external classifier file
    post = model.get('post_processor') or {}
    if 'external_classifier' in post:
        with open(ann_file) as f:
            data = json.load(f)
        ids, num_classes = list(data['database']), len(data['classes'])
        scores = {vid: [(i * 7 + k) % num_classes / num_classes
                        for i in range(num_classes)]
                  for k, vid in enumerate(ids)}
        path = osp.join(work_dir, 'classifier.json')
        os.makedirs(work_dir, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(dict(results=scores), f)
        post['external_classifier'] = path

    for loader in ('train_dataloader', 'val_dataloader'):
        dl = cfg[loader]
        dl.update(batch_size=2 if loader == 'train_dataloader' else 1,
                  num_workers=0, persistent_workers=False)
        ds = dl['dataset']
        ds['ann_file'] = ann_file
        ds['data_prefix'] = dict(video=video_dir)
        ds['subset'] = None  # the 2 fake videos, whatever the split names
        _shrink_pipeline(ds['pipeline'])
        if ds.get('window_duration'):
            ds['window_duration'] = _window_seconds(ds['pipeline'])

    # AMP needs CUDA: the same optimizer settings in a plain OptimWrapper
    ow = cfg.optim_wrapper
    if ow.get('type') == 'AmpOptimWrapper':
        ow['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            ow.pop(key, None)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1,
                         val_interval=1000)
    cfg.param_scheduler = None
    for key in ('val', 'test'):
        cfg[f'{key}_dataloader'] = cfg[f'{key}_cfg'] = None
        cfg[f'{key}_evaluator'] = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.env_cfg = dict(cudnn_benchmark=False,
                       mp_cfg=dict(mp_start_method='fork',
                                   opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))
    cfg.visualizer = dict(type='ActionVisualizer', vis_backends=[])
    cfg.log_level = 'WARNING'
    return cfg


class _StepCheck(Hook):
    """Records the loss and whether any parameter moved in the iteration."""
    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before = {n: p.detach().clone()
                       for n, p in runner.model.named_parameters()
                       if p.requires_grad}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.loss = float(outputs['loss'].detach())
        params = dict(runner.model.named_parameters())
        self.changed = [n for n, p in self.before.items()
                        if not torch.equal(p, params[n].detach())]


def predicts_segments(model, sample):
    """The trained model localizes one test sample: finite scores, at least
    one segment. Returns the predicted data sample."""
    from mmengine.dataset import pseudo_collate
    model.eval()
    with torch.no_grad():
        (pred, ) = model.test_step(pseudo_collate([sample]))
    inst = pred.pred_instances
    assert inst.segments.shape[-1] == 2 and len(inst.segments) > 0
    assert torch.isfinite(inst.scores).all()
    return pred


@pytest.mark.parametrize('config', VIDEO_CONFIGS,
                         ids=[osp.basename(p)[:-3] for p in VIDEO_CONFIGS])
def test_config_trains_one_iteration(config, fake_data, tmp_path):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from re2tal_mm.rewiring import is_rewired

    from mmaction.registry import DATASETS
    torch.set_num_threads(1)
    torch.manual_seed(0)

    cfg = Config.fromfile(config)
    # what a user gets: the plugin, the reversible rewiring and (paper
    # recipes) EMA, AMP and the published learning rates
    assert cfg.custom_imports['imports'] == ['re2tal_mm']
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'RewiringMetaHook' in hooks
    # AdaTAD's recipes run its plain (checkpointed) ViT; every other config
    # rewires its backbone to reversible
    rewired = not osp.basename(config).startswith('adatad_')
    if rewired:
        assert cfg.model.rewire['mode'] == 'reversible'
    else:
        assert cfg.model.rewire is None and cfg.model.backbone.with_cp
    assert cfg.model.type == 'TemporalActionLocalizer'
    # one key moves the data (tests/test_data_root.py); distributed with the
    # wrapper that works on CPU too, without rewiring again
    assert cfg.runner_type == 'DataRootRunner'
    assert cfg.model_wrapper_cfg == dict(
        type='ReversibleDistributedDataParallel', rewire_mode=None)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[key].dataset
        assert 'data_root' not in ds and not osp.isabs(ds.ann_file), key
    for key in ('val_evaluator', 'test_evaluator'):
        assert cfg[key].get('ann_file') is None, key
    num_classes = cfg.model.head.num_classes
    if '_swin-demo-' not in osp.basename(config):  # the demo and its
        # template for one's own videos (docs/custom_dataset.md) are small
        assert 'EMAHook' in hooks
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.clip_grad is not None
        assert cfg.load_from is None  # the user gives the K400 checkpoint
        if 'anet' in config:  # class-agnostic head, 200 dataset classes
            assert num_classes == 1
            assert cfg.train_dataloader.dataset.class_agnostic
            num_classes = 200
        elif 'epic-kitchens-100' in config:  # verb / noun classes
            assert num_classes == (300 if config.endswith('noun.py') else 97)
        elif config.endswith('_multithumos.py'):
            assert num_classes == 65
        elif config.endswith('_charades.py'):
            assert num_classes == 157
        else:
            assert num_classes == 20
    ann, videos = fake_data(num_classes)
    cfg = shrink(cfg, ann, videos, str(tmp_path / 'work'))
    val_ds_cfg = Config.fromfile(config).val_dataloader.dataset
    val_ds_cfg.update(ann_file=ann, data_prefix=dict(video=videos),
                      subset=None)
    _shrink_pipeline(val_ds_cfg.pipeline)
    if val_ds_cfg.get('window_duration'):
        val_ds_cfg.window_duration = _window_seconds(val_ds_cfg.pipeline)

    check = _StepCheck()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(check, priority='LOWEST')
    with DefaultScope.overwrite_default_scope('mmaction'):
        # the test-side dataset (sliding windows / resized videos) too
        val_ds = DATASETS.build(val_ds_cfg)
        sample = val_ds[0]
        assert sample['inputs'].shape[-3:] == (NUM_FRAMES, CROP, CROP)
        assert len(runner.train_dataloader.dataset) == 2
    model = runner.train()

    assert math.isfinite(check.loss), check.loss
    assert check.changed, 'no parameter changed'
    assert any(n.startswith('backbone.') for n in check.changed)
    assert any(n.startswith('head.') for n in check.changed)
    assert is_rewired(model.backbone) == rewired
    if cfg.model.backbone.get('temporal_adapter') is not None:
        # the frozen backbone trains its temporal adapters only
        assert all('.temporal_adapter.' in n for n in check.changed
                   if n.startswith('backbone.'))
        assert not [n for n, p in model.backbone.named_parameters()
                    if p.requires_grad and '.temporal_adapter.' not in n]

    # the rewired model localizes a test sample (the test-time path, with the
    # external classifier fusion for ActivityNet)
    pred = predicts_segments(model, sample)
    inst = pred.pred_instances
    if cfg.model.post_processor.get('external_classifier'):
        with open(cfg.model.post_processor.external_classifier) as f:
            cls = torch.tensor(json.load(f)['results'][
                pred.metainfo['video_id']])
        assert set(inst.labels.tolist()) <= set(cls.topk(2)[1].tolist())


def fake_features(out_dir, num_classes, channels, fps, stride, steps=40):
    """2 feature files ``<id>.npy`` (steps x channels) with one action each,
    and their ActivityNet-style annotation file."""
    import numpy as np
    rng = np.random.default_rng(0)
    classes = [f'class_{k}' for k in range(num_classes)]
    database = {}
    for v in range(2):
        np.save(osp.join(out_dir, f'feat{v}.npy'),
                rng.normal(size=(steps + 3 * v, channels)).astype('float32'))
        duration = (steps + 3 * v) * stride / fps
        database[f'feat{v}'] = dict(
            subset='validation', duration=duration, fps=fps,
            annotations=[dict(segment=[0.2 * duration, 0.6 * duration],
                              label=classes[v % num_classes])])
    ann = osp.join(out_dir, 'gt.json')
    with open(ann, 'w') as f:
        json.dump(dict(classes=classes, database=database), f)
    return ann


@pytest.mark.parametrize('config', FEATURE_CONFIGS,
                         ids=[osp.basename(p)[:-3] for p in FEATURE_CONFIGS])
def test_feature_config_trains_one_iteration(config, tmp_path):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from mmaction.registry import DATASETS
    torch.set_num_threads(1)
    torch.manual_seed(0)

    cfg = Config.fromfile(config)
    assert cfg.custom_imports['imports'] == ['re2tal_mm']
    assert cfg.model.type == 'TemporalActionLocalizer'
    assert cfg.model.get('backbone') is None  # feature mode
    for loader in ('train_dataloader', 'val_dataloader'):
        assert cfg[loader].dataset.modality == 'Feature'
    assert 'EMAHook' in [h['type'] for h in cfg.custom_hooks]
    assert cfg.optim_wrapper.clip_grad is not None
    (load, ) = [t for t in cfg.train_pipeline
                if t['type'] == 'LoadTALFeature']
    fps, stride = 30.0, load['feature_stride']
    folder = tmp_path / 'features'
    folder.mkdir()
    ann = fake_features(str(folder), cfg.model.head.num_classes,
                        cfg.model.neck.in_channels, fps, stride)
    cfg = shrink(cfg, ann, None, str(tmp_path / 'work'))
    window = NUM_FRAMES * stride / fps
    cfg.train_dataloader.dataset['data_prefix'] = dict(feature=str(folder))
    val_ds_cfg = Config.fromfile(config).val_dataloader.dataset
    val_ds_cfg.update(ann_file=ann, data_prefix=dict(feature=str(folder)),
                      subset=None)
    # resized videos (FineAction): one window a video, no sliding windows
    sliding = val_ds_cfg.get('sliding_window', False)
    if sliding:
        val_ds_cfg.update(window_duration=window)
    _shrink_pipeline(val_ds_cfg.pipeline)

    check = _StepCheck()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(check, priority='LOWEST')
    with DefaultScope.overwrite_default_scope('mmaction'):
        val_ds = DATASETS.build(val_ds_cfg)
        # sliding windows over both videos, or one a resized video
        assert len(val_ds) > 2 if sliding else len(val_ds) == 2
        sample = val_ds[0]
        assert sample['inputs'].shape == (cfg.model.neck.in_channels,
                                          NUM_FRAMES)
    model = runner.train()

    assert math.isfinite(check.loss), check.loss
    assert any(n.startswith('neck.') for n in check.changed)
    assert any(n.startswith('head.') for n in check.changed)
    predicts_segments(model, sample)

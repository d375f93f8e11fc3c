"""The dataset configs beyond THUMOS-14 / ActivityNet-1.3 (flat in
configs/re2tal/, trained one iteration at reduced size by
tests/test_configs.py like every config there): each names its dataset's
protocol and subsets; the EPIC-Kitchens-100 end-to-end configs follow
OpenTAD's AdaTAD EPIC windowing with the backbone rewired reversible at a
named memory preset."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from tests.conftest import REPO

PROTOCOL = {'epic-kitchens-100': 'epic-kitchens-100',
            'charades': 'charades', 'multithumos': 'multithumos',
            'ego4d-mq': 'ego4d-mq', 'hacs': 'activitynet',
            'fineaction': 'activitynet'}
DATASET_CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', 're2tal', '*.py'))
    if any(d in osp.basename(p) for d in PROTOCOL))
EPIC_E2E = [p for p in DATASET_CONFIGS
            if '-feature_' not in p and 'epic-kitchens-100' in p]
# AdaTAD's MultiTHUMOS / Charades recipes: (frames, stride, classes)
ADATAD_E2E = {'multithumos': (768, 4, 65), 'charades': (512, 4, 157)}


def test_configs_present_and_protocols():
    assert len(DATASET_CONFIGS) >= 10 and len(EPIC_E2E) == 2
    assert not osp.exists(osp.join(REPO, 'configs', 're2tal', 'datasets'))
    for path in DATASET_CONFIGS:
        cfg = Config.fromfile(path)
        (dataset, ) = [d for d in PROTOCOL if d in osp.basename(path)]
        assert cfg.val_evaluator.protocol == PROTOCOL[dataset]
        assert cfg.val_evaluator.subset == cfg.val_dataloader.dataset.subset
        assert cfg.test_evaluator == cfg.val_evaluator


@pytest.mark.parametrize('config', EPIC_E2E,
                         ids=[osp.basename(p)[:-3] for p in EPIC_E2E])
def test_epic_end_to_end_windowing(config):
    """OpenTAD's AdaTAD EPIC (768 snippets x 8 frames at 160x160, ViT-L with
    an adapter in each of its 24 blocks, 768 detector positions), rewired
    reversible with the memory preset named."""
    from re2tal_mm.rewiring.base import MEMORY
    cfg = Config.fromfile(config)
    task = 'noun' if config.endswith('noun.py') else 'verb'
    assert cfg.model.rewire == dict(mode='reversible', memory='floor')
    assert cfg.model.rewire['memory'] in MEMORY
    bb = cfg.model.backbone
    assert (bb.type, bb.embed_dims, bb.depth, bb.num_frames) == (
        'ClipBatchedViT', 1024, 24, 16)
    assert bb.temporal_adapter is not None and not bb.with_cp
    assert cfg.model.feat_len == cfg.model.neck.max_seq_len == 768
    assert cfg.model.neck.window_size == 9
    head = cfg.model.head
    assert head.num_classes == dict(verb=97, noun=300)[task]
    assert head.init_loss_norm == 250 and head.loss_reg.loss_weight == 0.5
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[key].dataset
        assert ds.ann_file == f'epic_kitchens_100_{task}.json'
        (win, ) = [t for t in ds.pipeline if t.type == 'TALWindowSample']
        assert win.num_steps == 768 * 8 and win.frame_stride == 1
        crops = [t for t in ds.pipeline
                 if t.type in ('CenterCrop', 'Resize')]
        assert crops[-1].get('crop_size', crops[-1].get('scale')) in (
            160, (160, 160))
    assert cfg.train_dataloader.dataset.subset == 'train'
    assert cfg.val_dataloader.dataset.sliding_window


@pytest.mark.parametrize('dataset', sorted(ADATAD_E2E))
def test_adatad_multilabel_end_to_end(dataset):
    """MultiTHUMOS / Charades: AdaTAD's windows (every 4th frame at
    160x160, VideoMAE-L with an adapter in each of its 24 blocks, one
    detector position a frame), rewired reversible at a named preset."""
    from re2tal_mm.rewiring.base import MEMORY
    (config, ) = [p for p in DATASET_CONFIGS
                  if p.endswith(f'_{dataset}.py') and '-feature_' not in p]
    frames, stride, classes = ADATAD_E2E[dataset]
    cfg = Config.fromfile(config)
    assert cfg.model.rewire == dict(mode='reversible', memory='floor')
    assert cfg.model.rewire['memory'] in MEMORY
    bb = cfg.model.backbone
    assert (bb.embed_dims, bb.depth) == (1024, 24) and not bb.with_cp
    assert cfg.model.feat_len == cfg.model.neck.max_seq_len == frames
    assert cfg.model.head.num_classes == classes
    assert len(cfg.model.head.strides) == 1 + cfg.model.neck.arch[2]
    for key in ('train_dataloader', 'val_dataloader'):
        (win, ) = [t for t in cfg[key].dataset.pipeline
                   if t.type == 'TALWindowSample']
        assert (win.num_steps, win.frame_stride) == (frames, stride)

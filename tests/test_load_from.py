"""``load_from=<an MMAction2 recognizer checkpoint>``: the main user path.

Tiny Swin and SlowFast ``Recognizer3D`` models are trained one iteration and
saved by MMEngine; our localizer config with ``load_from`` pointing at the
checkpoint gets every backbone tensor (plain and rewired), ignores
``cls_head.*`` and says how many tensors it loaded; mismatched checkpoints get
a warning naming what is missing.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import re2tal_mm  # noqa: F401
from re2tal_mm.rewiring import is_rewired

from .conftest import REPO, own_logger, runner_log
from .test_engine import TinySyntheticVideos  # noqa: F401 (registers it)
from .test_reversible import SMALL_SLOWFAST

CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')

SWIN = dict(type='SwinTransformer3D',
            arch=dict(embed_dims=24, depths=[2, 2], num_heads=[3, 6]),
            pretrained=None, pretrained2d=False, patch_size=(2, 4, 4),
            window_size=(8, 4, 4), drop_path_rate=0.1, out_indices=(1, ))


BACKBONES = {
    'swin': (SWIN, dict(type='I3DHead', in_channels=48, num_classes=2)),
    'slowfast': (dict(type='ResNet3dSlowFast', **SMALL_SLOWFAST),
                 dict(type='SlowFastHead', in_channels=576, num_classes=2)),
}


def train_recognizer(name, work_dir):
    """One iteration of a stock Recognizer3D, saved by MMEngine."""
    from mmengine.runner import Runner
    backbone, head = BACKBONES[name]
    cfg = Config(dict(
        default_scope='mmaction', work_dir=str(work_dir),
        model=dict(type='Recognizer3D', backbone=copy.deepcopy(backbone),
                   cls_head=head,
                   data_preprocessor=dict(type='ActionDataPreprocessor',
                                          format_shape='NCTHW')),
        train_dataloader=dict(
            batch_size=1, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='TinySyntheticVideos', num_samples=1,
                         shape=(1, 3, 8, 32, 32), num_classes=2)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        env_cfg=dict(dist_cfg=dict(backend='gloo'))))
    Runner.from_cfg(cfg).train()
    return str(work_dir / 'iter_1.pth')


@pytest.fixture(scope='module')
def recognizers(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('recognizers')
    return {name: train_recognizer(name, root / name) for name in BACKBONES}


def localizer_runner(backbone, load_from, work_dir, rewire):
    from mmengine.runner import Runner
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone = copy.deepcopy(backbone)
    cfg.model.rewire = rewire
    cfg.load_from = load_from
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(own_logger(cfg, 'load_from'))
    runner.load_or_resume()
    return runner.model, runner_log(runner)


@pytest.mark.parametrize('rewire', [None, dict(mode='reversible')],
                         ids=['plain', 'rewired'])
@pytest.mark.parametrize('name', list(BACKBONES))
def test_recognizer_checkpoint_loads_every_backbone_tensor(
        name, rewire, recognizers, tmp_path):
    ckpt = torch.load(recognizers[name], map_location='cpu',
                      weights_only=False)['state_dict']
    model, log = localizer_runner(BACKBONES[name][0], recognizers[name],
                                  tmp_path, rewire)
    assert is_rewired(model) == bool(rewire)
    own = model.backbone.state_dict()
    assert own and all(torch.equal(v, ckpt['backbone.' + k])
                       for k, v in own.items())
    heads = sum(k.startswith('cls_head.') for k in ckpt)
    assert heads > 0
    assert (f'loading the backbone: {len(own)}/{len(own)} tensors from the '
            f'checkpoint; {heads} keys outside this model ignored ({heads} '
            'of the recognizer head cls_head.*)') in log
    assert 'backbone tensors missing' not in log


def test_checkpoint_of_another_backbone_warns(recognizers, tmp_path):
    model, log = localizer_runner(BACKBONES['slowfast'][0],
                                  recognizers['swin'], tmp_path, None)
    n = len(model.backbone.state_dict())
    assert f'{n} backbone tensors missing from the checkpoint' in log
    assert 'slow_path.conv1.conv.weight' in log  # names what is missing
    assert 'another backbone architecture' in log


def test_bare_backbone_state_dict_is_loaded_with_a_warning(recognizers,
                                                           tmp_path):
    ckpt = torch.load(recognizers['swin'], map_location='cpu',
                      weights_only=False)['state_dict']
    bare = {k[len('backbone.'):]: v for k, v in ckpt.items()
            if k.startswith('backbone.')}
    path = str(tmp_path / 'bare.pth')
    torch.save(dict(state_dict=bare), path)
    model, log = localizer_runner(SWIN, path, tmp_path, None)
    assert 'bare backbone state_dict' in log
    assert all(torch.equal(v, bare[k])
               for k, v in model.backbone.state_dict().items())
    # the renaming hook runs first: the report counts the renamed tensors
    n = len(model.backbone.state_dict())
    assert f'loading the backbone: {n}/{n} tensors' in log

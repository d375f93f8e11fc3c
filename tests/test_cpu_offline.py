"""Stock MMAction2 configs train on a CPU-only, offline machine with the
overrides of the README's "CPU and offline" section.

For each family (Swin, TSM, VideoMAE ViT, X3D, MViT) the stock config is
inherited through ``mmaction::``, as a user's config would, with the plugin,
``RewireBackboneHook`` and exactly the overrides the README documents
(:data:`FAMILIES`; each must appear verbatim in the README). What the test
changes besides, to run in seconds: the data (``TinySyntheticVideos`` of
``tests/test_engine.py``, 2 clips, 2 classes, instead of Kinetics), the
backbone's input size where it is a parameter (ViT ``img_size`` /
``num_frames``, MViT ``spatial_size`` / ``temporal_size``), one iteration,
no validation, test or checkpoint. Negative checks show that the documented
overrides are needed (the flags each family fails without).
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from .conftest import REPO
from .test_engine import TinySyntheticVideos  # noqa: F401 (registers it)

#: What every family's config gets in the test (not an override the README
#: asks for: the tiny data, one iteration, nothing else run).
SHRINK = """
custom_imports = dict(imports=['re2tal_mm'], allow_failed_imports=False)
default_scope = 'mmaction'
custom_hooks = [dict(type='RewireBackboneHook', mode='reversible')]
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
param_scheduler = []
default_hooks = dict(checkpoint=None, logger=dict(interval=1))
log_level = 'WARNING'
"""


def tiny_data(shape, delete=True):
    return (f"dataset=dict({'_delete_=True, ' if delete else ''}"
            f"type='TinySyntheticVideos', num_samples=2, shape={shape}, "
            'num_classes=2)')


def train_loop(delete=True):
    return (f"train_cfg = dict({'_delete_=True, ' if delete else ''}"
            "type='IterBasedTrainLoop', max_iters=1, val_interval=100)\n")


SWIN = ('recognition/swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_'
        'kinetics400-rgb.py')
TSM = ('recognition/tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_'
       'kinetics400-rgb.py')
VIT = ('recognition/videomae/vit-base-p16_videomae-k400-pre_16x4x1_'
       'kinetics-400.py')
X3D = 'recognition/x3d/x3d_s_13x6x1_facebook-kinetics400-rgb.py'
MVIT = 'recognition/mvit/mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb.py'
CLIP3D = '(1, 3, 4, 32, 32)'
TEST_ONLY = ('train_cfg = dict(type=', 'optim_wrapper = dict(optimizer=')

#: family -> (stock config, --cfg-options overrides as documented,
#: config-file overrides (test shrinking included), documented strings)
FAMILIES = {
    'swin': (SWIN, {'optim_wrapper.type': 'OptimWrapper',
                    'model.backbone.pretrained': None,
                    'model.backbone.pretrained2d': False},
             f"""
model = dict(cls_head=dict(num_classes=2))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        {tiny_data(CLIP3D)})
{train_loop()}""",
             ['optim_wrapper.type=OptimWrapper',
              'model.backbone.pretrained=None',
              'model.backbone.pretrained2d=False']),
    'tsm': (TSM, {'model.backbone.pretrained': None,
                  'model.backbone.pretrained2d': False},
            f"""
model = dict(cls_head=dict(num_classes=2))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        {tiny_data('(8, 3, 32, 32)')})
{train_loop()}""",
            ['model.backbone.pretrained=None',
             'model.backbone.pretrained2d=False']),
    # test-only configs: training data, loop and optimizer added as plain
    # dicts (the base has none to merge into)
    'vit': (VIT, {}, f"""
model = dict(backbone=dict(img_size=32, num_frames=4),
             cls_head=dict(num_classes=2))
train_dataloader = dict(batch_size=2, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        {tiny_data(CLIP3D, delete=False)})
{train_loop(delete=False)}
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4,
                                    weight_decay=0.05))
""", list(TEST_ONLY)),
    'x3d': (X3D, {}, f"""
model = dict(cls_head=dict(num_classes=2))
train_dataloader = dict(batch_size=2, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        {tiny_data(CLIP3D, delete=False)})
{train_loop(delete=False)}
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
""", list(TEST_ONLY)),
    # RepeatAugDataset replaced (its num_repeats must not reach the new
    # dataset), collate_fn restated (the mmaction:: base's carries _scope_,
    # which the Runner passes to the function), Mixup / CutMix off (they
    # are set for 400 classes)
    'mvit': (MVIT, {'model.data_preprocessor.blending': None}, f"""
model = dict(backbone=dict(spatial_size=32, temporal_size=4),
             cls_head=dict(num_classes=2))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    collate_fn=dict(_delete_=True, type='pseudo_collate'),
    {tiny_data(CLIP3D)})
{train_loop()}""",
             ["collate_fn=dict(_delete_=True, type='pseudo_collate')",
              "collate_fn=dict(_delete_=True, type='repeat_pseudo_collate')",
              'dataset=dict(_delete_=True',
              'model.data_preprocessor.blending=None']),
}


def readme_section():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    start = text.index('### CPU and offline')
    return text[start:text.index('\n## ', start)]


def make_config(tmp_path, family, options=None, extra=''):
    """The family's config as ``tools/train.py`` builds it: file, then
    ``--cfg-options``."""
    base, documented, body, _ = FAMILIES[family]
    path = tmp_path / f'{family}_cpu.py'
    path.write_text(f"_base_ = 'mmaction::{base}'\n" + SHRINK + body + extra)
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.launcher = 'none'
    cfg.merge_from_dict(documented if options is None else options)
    return cfg


class _Loss(Hook):
    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.loss = float(outputs['loss'].detach())


def test_readme_documents_every_override():
    section = readme_section()
    for family, (base, options, _, strings) in FAMILIES.items():
        assert f'recognition/{base.split("/")[1]}/' in section, family
        for text in strings:
            assert text in section, (family, text)
        for key, value in options.items():
            assert f'{key}={value}' in section, (family, key)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_stock_config_trains_on_cpu_with_documented_overrides(
        family, tmp_path):
    from mmengine.runner import Runner

    from re2tal_mm.rewiring import is_rewired
    torch.manual_seed(0)
    cfg = make_config(tmp_path, family)
    runner = Runner.from_cfg(cfg)
    loss = _Loss()
    runner.register_hook(loss)
    model = runner.train()
    assert runner.iter == 1
    assert type(runner.optim_wrapper).__name__ == 'OptimWrapper'
    assert math.isfinite(loss.loss)
    assert is_rewired(model.backbone)


@pytest.mark.parametrize('family', ['swin', 'tsm'])
def test_pretrained2d_is_needed_without_the_download(family, tmp_path):
    """``pretrained=None`` alone is not enough: ``pretrained2d=True`` then
    inflates 2D weights from no file."""
    from mmaction.registry import MODELS
    cfg = make_config(tmp_path, family, options={
        'model.backbone.pretrained': None})
    backbone = MODELS.build(cfg.model.backbone)
    with pytest.raises(TypeError):
        backbone.init_weights()


def test_amp_optim_wrapper_needs_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('has a GPU')
    from mmengine.optim import build_optim_wrapper
    cfg = make_config(tmp_path, 'swin', options={})
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    with pytest.raises(AssertionError, match='only available training on '
                       'gpu'):
        build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)


def test_mvit_stock_collate_and_repeat_aug_fail_without_delete(tmp_path):
    """What the MViT overrides are for, at the config level (no training):
    without ``_delete_`` the stock ``RepeatAugDataset`` keys reach the new
    dataset, and the stock ``collate_fn`` keeps its ``_scope_``."""
    cfg = make_config(tmp_path, 'mvit', extra="""
train_dataloader = dict(collate_fn=dict(type='pseudo_collate'),
                        dataset=dict(type='TinySyntheticVideos'))
""")
    assert cfg.train_dataloader.dataset.num_repeats == 2
    assert cfg.train_dataloader.collate_fn._scope_ == 'mmaction'
    model = make_config(tmp_path, 'mvit', options={}).model
    blending = model.data_preprocessor.blending
    assert {a['num_classes'] for a in blending['augments']} == {400}

"""Our recipe configs are OpenTAD's, setting by setting.

The OpenTAD side is written out here as data, from its config files at HEAD
3dd7b03 (``configs/re2tal/e2e_{thumos,anet}_re2tal_actionformer_*.py``,
``configs/adatad/thumos/e2e_thumos_videomae_{s,b}_768x1_160_adapter.py``,
``configs/_base_/models/actionformer.py``); the translation of each model
part is :mod:`re2tal_mm.apis.opentad`'s ``model_cfg`` (the same code that
the reference fixtures pin), so a config that drifts from OpenTAD's
function fails here. Settings of the data and training (windows, frames,
augmentation, schedule) are compared one by one with the README's recipe
table.
"""
import inspect
import os.path as osp

import pytest
from mmengine.config import Config

from re2tal_mm.apis.opentad import actionformer, adatad, slowfast, swin

from .conftest import REPO
from .opentad_configs import actionformer_config

CONFIGS = osp.join(REPO, 'configs', 're2tal')

SWIN = dict(
    cls='SwinTransformer3D_inv', patch_size=(2, 4, 4), embed_dim=96,
    depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=(8, 7, 7),
    mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
    attn_drop_rate=0.0, drop_path_rate=0.2, patch_norm=True,
    inv_mode=['custom_backprop'] * 4)
SLOWFAST = dict(
    cls='ResNet3dSlowFast_inv', pretrained=None,
    pretrain_type='inv_resnet_3d', resample_rate=4, speed_ratio=4,
    channel_ratio=8,
    slow_pathway=dict(
        type='resnet3d', depth=101, pretrained=None, lateral=True,
        fusion_kernel=7, conv1_kernel=(1, 7, 7), dilations=(1, 1, 1, 1),
        conv1_stride_t=1, pool1_stride_t=1, inflate=(0, 0, 1, 1),
        norm_eval=True, frozen_stages=-1),
    fast_pathway=dict(
        type='resnet3d', depth=101, pretrained=None, lateral=False,
        base_channels=8, conv1_kernel=(5, 7, 7), conv1_stride_t=1,
        pool1_stride_t=1, norm_eval=True, frozen_stages=-1),
    inv_mode=['custom_backprop'] * 4)
VIDEOMAE_B = dict(
    cls='VisionTransformerAdapter', img_size=224, patch_size=16,
    embed_dims=768, depth=12, num_heads=12, mlp_ratio=4, qkv_bias=True,
    num_frames=16, drop_path_rate=0.1, norm_cfg=dict(type='LN', eps=1e-6),
    return_feat_map=True, with_cp=True, total_frames=768,
    adapter_index=list(range(12)))
#: backbone arguments that only trade memory or speed (same function)
NEUTRAL = {'with_cp', 'attention', 'pretrained', 'pretrained2d'}


def anet_detector(in_channels):
    """OpenTAD's Re2TAL ActivityNet overrides."""
    cfg = actionformer_config(in_channels, 256, 192)
    cfg['projection'].update(use_abs_pe=True)
    cfg['rpn_head'].update(num_classes=1, label_smoothing=0.1,
                           loss_weight=2.0, loss_normalizer=200)
    return cfg


def thumos_detector(in_channels, max_seq_len=512):
    return actionformer_config(in_channels, max_seq_len=max_seq_len)


def defaults(*classes) -> dict:
    return {k: p.default for cls in reversed(classes) for k, p in
            inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def resolved(cfg: dict) -> dict:
    """A backbone config with every argument the class's default when not
    given (Swin's named arch spelt out, SlowFast's pathways resolved, the
    temporal adapters' blocks listed)."""
    from mmaction.models.backbones.resnet3d import ResNet3d
    from mmaction.models.backbones.resnet3d_slowfast import ResNet3dPathway
    from mmaction.registry import MODELS
    cls = MODELS.get(cfg['type'])
    # a subclass passing **kwargs on (ClipBatchedViT): its bases' defaults
    bases = [c for c in cls.__mro__ if '__init__' in vars(c) and
             c.__module__.startswith(('mmaction', 're2tal_mm'))]
    full = dict(defaults(*bases), **cfg)
    if isinstance(full.get('arch'), str):
        full['arch'] = dict(cls.arch_zoo[full['arch']])
    if 'adapter_blocks' in full and full['adapter_blocks'] is None:
        full['adapter_blocks'] = list(range(full['depth']))  # all blocks
    for key in ('slow_pathway', 'fast_pathway'):
        if key in full:
            assert full[key]['type'] == 'resnet3d'
            full[key] = dict(defaults(ResNet3dPathway, ResNet3d),
                             **full[key])
    return full


def assert_backbone(ours: dict, theirs: dict):
    ours, theirs = resolved(ours), resolved(theirs)
    for key, value in theirs.items():
        if key in NEUTRAL or key == 'temporal_adapter':
            continue
        assert ours.get(key) == value, (key, ours.get(key), value)


RECIPES = [
    # config, OpenTAD backbone kind and constructor, OpenTAD detector
    ('re2tal_swin-tiny-p244-w877_2xb2-1024x224-amp-ema_thumos14.py', swin,
     SWIN, thumos_detector(768)),
    ('re2tal_slowfast-r101_2xb2-1024x224-amp-ema_thumos14.py', slowfast,
     SLOWFAST, thumos_detector(2304)),
    ('re2tal_swin-tiny-p244-w877_4xb8-768x224-amp-ema_anet1.3.py', swin,
     SWIN, anet_detector(768)),
    ('re2tal_slowfast-r101_4xb8-768x224-amp-ema_anet1.3.py', slowfast,
     SLOWFAST, anet_detector(2304)),
    ('adatad_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py', adatad,
     VIDEOMAE_B, thumos_detector(768, 768)),
]


@pytest.mark.parametrize('name,kind,constructor,detector', RECIPES,
                         ids=[r[0][:-3] for r in RECIPES])
def test_config_computes_opentads_model(name, kind, constructor, detector):
    import re2tal_mm  # noqa: F401 - registers the components
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    model = cfg.model
    theirs = kind.model_cfg(constructor)
    assert_backbone(model.backbone, theirs['backbone'])
    # the memory preset trades memory for time, not the function
    # (tests/test_memory_presets.py checks every config names one)
    ours = None if model.rewire is None else {
        k: v for k, v in model.rewire.items() if k != 'memory'}
    assert ours == theirs['rewire']
    if 'feat_len' in theirs:
        assert model.feat_len == theirs['feat_len']
    det = actionformer.model_cfg(detector)
    assert model.neck.to_dict() == det['neck']
    head = model.head.to_dict()
    assert head == det['head'], set(head.items()) ^ set(det['head'].items())
    # OpenTAD's norm_eval: frozen for Re2TAL, trained for AdaTAD
    assert model.frozen_backbone_norms == (kind is not adatad)


def test_adapter_widths_equal_adatads():
    cfg = Config.fromfile(osp.join(
        CONFIGS, 'adatad_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py'))
    ours = cfg.model.backbone.temporal_adapter
    theirs = adatad.model_cfg(VIDEOMAE_B)['backbone']['temporal_adapter']
    assert cfg.model.backbone.embed_dims // ours.reduction == \
        theirs['hidden_dims']
    assert ours.kernel_size == theirs['kernel_size']


@pytest.mark.parametrize('name,frames,stride,crop,windows', [
    ('re2tal_swin-tiny-p244-w877_2xb2-1024x224-amp-ema_thumos14.py', 1024,
     2, 224, 0.5),
    ('adatad_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py', 768, 4, 160,
     0.5),
    ('adatad_videomaev2-g-p14_2xb2-1536x224-amp-ema_thumos14.py', 1536, 2,
     224, 0.5),
])
def test_thumos_data_settings(name, frames, stride, crop, windows):
    """OpenTAD's frames, sampling, windows and augmentation."""
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    test = {t['type']: t for t in cfg.test_dataloader.dataset.pipeline}
    sample = train['TALWindowSample']
    assert (sample.num_steps, sample.frame_stride) == (frames, stride)
    assert (sample.min_action_ratio, sample.partial_actions,
            tuple(sample.crop_ratio)) == (0.75, False, (0.9, 1.0))
    # OpenTAD's augmentation but its ImgAug (README recipe table)
    assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline] == [
        'TALVideoInit', 'TALWindowSample', 'TALVideoDecode', 'Resize',
        'RandomResizedCrop', 'Resize', 'Flip', 'ColorJitter', 'FormatShape',
        'PackTALInputs']
    resizes = [t for t in cfg.train_dataloader.dataset.pipeline
               if t['type'] == 'Resize']
    assert resizes[-1].scale == (crop, crop) and not resizes[-1].keep_ratio
    assert test['Resize'].scale == (-1, crop)
    assert test['CenterCrop'].crop_size == crop
    assert test['TALWindowSample'].num_steps == frames
    ds = cfg.test_dataloader.dataset
    assert ds.sliding_window and ds.window_overlap == windows
    assert cfg.test_evaluator.nms.sigma == 0.7
    assert cfg.test_evaluator.max_per_video == 2000


def test_schedules():
    """Warm-up 5 epochs from ~0, then OpenTAD's cosine period, stopped at its
    end epoch."""
    for name, end, period, lr, backbone in [
            ('re2tal_swin-tiny-p244-w877_2xb2-1024x224-amp-ema_thumos14.py',
             120, 1500, 1e-4, 0.1),
            ('re2tal_slowfast-r101_4xb8-768x224-amp-ema_anet1.3.py', 15, 15,
             1e-3, 0.01),
            ('adatad_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py', 60,
             100, 1e-4, 1.0)]:
        cfg = Config.fromfile(osp.join(CONFIGS, name))
        warm, cosine = cfg.param_scheduler
        assert (warm.type, warm.begin, warm.end) == ('LinearLR', 0, 5)
        assert warm.start_factor <= 1e-6
        assert (cosine.type, cosine.begin, cosine.end, cosine.T_max) == (
            'CosineAnnealingLR', 5, end, period - 5)
        assert cfg.train_cfg.max_epochs == end
        assert cfg.optim_wrapper.optimizer.lr == lr
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
        keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
        assert keys['backbone']['lr_mult'] == backbone
        assert cfg.optim_wrapper.clip_grad.max_norm == 1.0

# "Switch an existing config": MMAction2's own Video Swin-T Kinetics-400
# recognition config turned into reversible end-to-end temporal action
# localization on THUMOS-14. Everything not restated here (AMP optimizer
# wrapper, SwinOptimWrapperConstructor with the backbone at 0.1x lr and no
# decay on norms / position tables, warm-up + cosine schedule, runtime,
# hooks, logging) comes from the stock config.
#
# What changes, step by step:
#   1. custom_imports   -> registers re2tal_mm's classes in MMAction2's
#                          registries;
#   2. custom_hooks     -> RewiringMetaHook records the rewiring in
#                          checkpoints (+ EMA);
#   3. model            -> TemporalActionLocalizer with the same Swin-T
#                          backbone rewired to reversible (rewire=...), an
#                          ActionFormer neck/head;
#   4. data / metric    -> TALDataset on the converter's JSON, TAL pipelines,
#                          TALMetric.
# Train: mim train mmaction2 <this file> --work-dir work_dirs/swin_thumos
_base_ = 'mmaction::recognition/swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py'  # noqa: E501

# 1. the plugin, its runner (gives the top-level `data_root` to every
# TALDataset after --cfg-options: `--cfg-options data_root=DIR` moves all the
# data) and the DDP wrapper (no device_ids for a CPU model; the model is
# rewired at construction, so it only wraps)
custom_imports = dict(imports=['re2tal_mm'], allow_failed_imports=False)
runner_type = 'DataRootRunner'
model_wrapper_cfg = dict(type='ReversibleDistributedDataParallel',
                         rewire_mode=None)

# paths the user sets: ActivityNet-style JSON written by
# tools/data/convert_thumos.py, videos as <video_id>.mp4 (both relative to
# data_root), and the Kinetics-400 checkpoint trained with the base config
# (MMAction2 model zoo; its backbone.* weights are loaded, cls_head.*
# ignored)
data_root = 'data/thumos14'
ann_file = 'thumos14_gt.json'
video_dir = 'videos'
load_from = None

num_classes = 20
num_frames = 1024
frame_stride = 2

# 2. the rewiring record and EMA
custom_hooks = [
    dict(type='RewiringMetaHook'),
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.001,
         priority='ABOVE_NORMAL'),
]

# 3. the model: the base's backbone (restated from
# mmaction::_base_/models/swin_tiny.py, with pretrained=None because the
# weights come from load_from rather than the ImageNet URL of the base) under
# a TAL detector
model = dict(
    _delete_=True,
    type='TemporalActionLocalizer',
    # reversible rewiring (the only line a plain TAL config needs), with
    # the memory preset measured for Swin-T (configs/re2tal/README.md)
    rewire=dict(mode='reversible', memory='floor'),
    backbone=dict(
        type='SwinTransformer3D', arch='tiny', pretrained=None,
        pretrained2d=False, patch_size=(2, 4, 4), window_size=(8, 7, 7),
        mlp_ratio=4., qkv_bias=True, qk_scale=None, drop_rate=0.,
        attn_drop_rate=0., drop_path_rate=0.1, patch_norm=True),
    feat_len=num_frames // 2,
    neck=dict(type='ActionFormerNeck', in_channels=768, embed_dims=512,
              num_levels=6, num_heads=4, window_size=19, drop_path=0.1),
    head=dict(type='ActionFormerHead', num_classes=num_classes,
              in_channels=512, feat_channels=512,
              strides=(1, 2, 4, 8, 16, 32),
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000))),
    post_processor=dict(type='TALPostProcessor', score_thr=0.001),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375],
                           format_shape='NCTHW'))

# 4. TAL data and metric
train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomCrop', size=224),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride, test_mode=True),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(_delete_=True, type='TALDataset', ann_file=ann_file,
                 subset='validation', data_prefix=dict(video=video_dir),
                 ignore_ambiguous=True, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    dataset=dict(_delete_=True, type='TALDataset', ann_file=ann_file,
                 subset='test', data_prefix=dict(video=video_dir),
                 test_mode=True, sliding_window=True,
                 window_overlap=0.5, pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file (follows data_root)
val_evaluator = dict(_delete_=True, type='TALMetric', subset='test',
                     tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
test_evaluator = val_evaluator

# the detector's lr (the base's constructor keeps the backbone at 0.1x:
# 1e-5), with gradient clipping
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0))
auto_scale_lr = dict(enable=False, base_batch_size=2)

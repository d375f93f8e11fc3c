# The `make demo` config: end-to-end TAL on the synthetic video dataset of
# tools/data/make_synthetic_dataset.py with a small Video Swin backbone rewired
# to reversible at construction (model.rewire; tools/demo.py also trains it
# with model.rewire=None for comparison). Sized for a 2-core CPU.
custom_imports = dict(imports=['re2tal_mm'], allow_failed_imports=False)
default_scope = 'mmaction'
# gives the top-level `data_root` to every TALDataset after --cfg-options:
# `--cfg-options data_root=DIR` moves all the data (paths below are relative
# to it; TALMetric reads the ground truth of the dataset it evaluates)
runner_type = 'DataRootRunner'
# distributed (torchrun ... --launcher pytorch): no device_ids for a CPU
# model; the model is rewired at construction, so the wrapper only wraps
model_wrapper_cfg = dict(type='ReversibleDistributedDataParallel',
                         rewire_mode=None)

data_root = 'data/synthetic'
ann_file = 'annotations.json'  # <data_root>/annotations.json
num_classes = 4
classes = [f'class_{i}' for i in range(num_classes)]
max_epochs = 40
num_steps = 64  # frames per training window (12.8 s at 5 fps)

model = dict(
    type='TemporalActionLocalizer',
    backbone=dict(
        type='SwinTransformer3D',
        arch=dict(embed_dims=24, depths=[2, 2], num_heads=[3, 6]),
        pretrained=None, pretrained2d=False, patch_size=(2, 4, 4),
        window_size=(8, 4, 4), drop_path_rate=0.1, out_indices=(1, )),
    # reversible rewiring, done when the model is built (before load_from,
    # DDP and in every tool that builds it from this config)
    # 'balanced': the demo's small Swin fits on any CPU; the step time
    # matters more here than the floor's memory
    rewire=dict(mode='reversible', memory='balanced'),
    # the actor is a small disc: max pooling over space keeps its features
    # (average pooling over the 8x8 map dilutes them 20-fold)
    spatial_pool='max',
    neck=dict(type='ActionFormerNeck', in_channels=48, embed_dims=64,
              num_levels=4, num_heads=4, window_size=9, drop_path=0.1),
    head=dict(type='ActionFormerHead', num_classes=num_classes,
              in_channels=64, feat_channels=64, strides=(1, 2, 4, 8),
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 10000))),
    post_processor=dict(type='TALPostProcessor', score_thr=0.01),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375],
                           format_shape='NCTHW'))

# records the rewiring in checkpoints, warns when one is loaded as another
# function
custom_hooks = [dict(type='RewiringMetaHook')]

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_steps, target_fps=5),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(64, 64), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_steps, target_fps=5,
         test_mode=True),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(64, 64), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
dataset = dict(type='TALDataset', ann_file=ann_file, classes=classes,
               data_prefix=dict(video='videos'))
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(**dataset, subset='training', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, subset='validation', test_mode=True,
                 sliding_window=True, window_overlap=0.5,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file (follows data_root)
val_evaluator = dict(type='TALMetric', subset='validation',
                     tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=15),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, T_max=max_epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]
default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=5),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_processor = dict(type='LogProcessor', window_size=5, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)

# The model of ../shared/reference/opentad/re2tal_swin_tal_ckpt.pth (an
# OpenTAD TAL checkpoint: Re2TAL Swin, embed_dim 8, window (8, 3, 3), and the
# ActionFormer of configs/re2tal/e2e_thumos_re2tal_actionformer_swin_tiny.py
# at width 32, 20 classes) on the synthetic videos of
# re2tal_mm.datasets.synthetic, sized for a CPU test (64x64 frames, 64-frame
# windows). Written by hand from what re2tal_mm.apis.opentad gives:
# swin.model_cfg(constructor) for backbone / rewire,
# actionformer.model_cfg(detector config) for neck / head (projection
# in_channels 64, out_channels 32, n_mha_win_size=-1, max_seq_len = the
# detector length), post_processing.post_processing_cfg(Re2TAL THUMOS
# post_processing, sliding_window=True) for post_processor / TALMetric.
# tests/test_opentad_checkpoint.py converts the checkpoint and runs it
# through `mim test` and localize_video with this config.
custom_imports = dict(imports=['re2tal_mm'], allow_failed_imports=False)
default_scope = 'mmaction'
# `--cfg-options data_root=DIR` moves all the data
runner_type = 'DataRootRunner'

data_root = 'data/synthetic'
ann_file = 'annotations.json'
num_classes = 20  # the checkpoint's head; the synthetic videos use 0..3
classes = [f'class_{i}' for i in range(num_classes)]
num_steps = 64  # frames per window (12.8 s at 5 fps)
target_fps = 5
feat_len = num_steps // 2  # Swin halves time (patch 2); OpenTAD's
# Interpolate to the window: the identity here, as in its recipe

model = dict(
    type='TemporalActionLocalizer',
    # swin.model_cfg(re2tal_swin.pth's constructor)
    backbone=dict(
        type='SwinTransformer3D', pretrained=None, pretrained2d=False,
        arch=dict(embed_dims=8, depths=[2, 2, 6, 2], num_heads=[1, 2, 4, 8]),
        out_indices=(3, ), out_after_downsample=False, patch_size=(2, 4, 4),
        in_channels=3, window_size=(8, 3, 3), mlp_ratio=4.0, qkv_bias=True,
        qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.2,
        act_cfg=dict(type='GELU'), norm_cfg=dict(type='LN'), patch_norm=True,
        frozen_stages=-1, with_cp=False),
    rewire=dict(mode='reversible'),
    # OpenTAD's Reduce 'b t c tt h w -> b c tt' (mean) and norm_eval
    spatial_pool='avg',
    frozen_backbone_norms=True,
    feat_len=feat_len,
    # actionformer.model_cfg(the checkpoint's detector config)
    neck=dict(
        type='ActionFormerTransformerNeck', in_channels=64, embed_dims=32,
        arch=(2, 2, 5), kernel_size=3, num_heads=4, window_size=-1,
        drop_path=0.1, proj_drop=0.0, input_drop=0.0, embed_norm=True,
        norm_eps=1e-6, abs_pe=False, max_seq_len=feat_len, out_norm=True,
        mask_outputs=False),
    head=dict(
        type='ActionFormerHead', num_classes=num_classes, in_channels=32,
        feat_channels=32, num_convs=2, strides=(1, 2, 4, 8, 16, 32),
        regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                        (64, 10000)),
        center_sample_radius=1.5,
        loss_cls=dict(type='TALSigmoidFocalLoss', alpha=0.25, gamma=2.0),
        loss_reg=dict(type='DIoU1DLoss', mode='diou', loss_weight=1.0),
        init_loss_norm=100.0, loss_norm_momentum=0.9, prior_prob=0.01,
        norm_eps=1e-6, tower_bias=False, label_smoothing=0.0),
    # post_processing_cfg(...)['post_processor']: no NMS per window
    post_processor=dict(type='TALPostProcessor', score_thr=0.001,
                        pre_nms_topk=2000, min_duration=None, nms=None),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375],
                           format_shape='NCTHW'))

# records the rewiring in checkpoints, warns when one is loaded as another
# function
custom_hooks = [dict(type='RewiringMetaHook')]

test_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_steps, target_fps=target_fps,
         test_mode=True),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(64, 64), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
dataset = dict(type='TALDataset', ann_file=ann_file, classes=classes,
               data_prefix=dict(video='videos'))
test_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, subset='validation', test_mode=True,
                 sliding_window=True, window_overlap=0.5,
                 pipeline=test_pipeline))
# post_processing_cfg(...)['metric']: OpenTAD's one NMS of the merged
# sliding windows (soft-NMS sigma 0.7, 2,000 segments)
test_evaluator = dict(
    type='TALMetric', subset='validation',
    tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7],
    nms=dict(class_agnostic=False, iou_threshold=0.0, length_eps=1e-6,
             max_num=2000, method='soft', min_score=0.001,
             procedure='opentad', sigma=0.7),
    max_per_video=2000, clip='before', round_before_nms=True,
    drop_empty=False)
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_processor = dict(type='LogProcessor', window_size=1, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)

# TriDet (Shi et al., CVPR 2023) on THUMOS-14 I3D features (feature mode:
# no backbone), the published recipe: SGP feature pyramid (6 levels, 512
# channels, w=1, k=5, FFN 768), Trident head (16 bins, IoU-weighted focal
# loss with power 0.2, DIoU), 2304-step training windows, AdamW lr 1e-4 with
# 20 warm-up + 20 cosine epochs, batch 2, gradient clipping, EMA.
# Published: average mAP 69.3 (tIoU 0.3:0.1:0.7); not reproduced here.
#
# Features: the two-stream I3D features (RGB + flow, 1024 + 1024 channels)
# of ActionFormer's THUMOS-14 release, one `<video_id>.npy` (T x 2048) per
# video: 16-frame clips every 4 frames of the 30 fps video, so feature i
# stands for the middle of its clip, frame 4 * i + 8 (grid centre 2).
# Annotations: the output of
#   python tools/data/convert_thumos.py data/thumos14/thumos14_gt.json \
#       --val val_Annotation.csv --test test_Annotation.csv \
#       --groundtruth thumos14_test_groundtruth.csv
# (subset 'validation' = training set here, 'test' = evaluation set).
_base_ = ['./_base_/re2tal_runtime.py']

# ---- paths the user sets --------------------------------------------------
# One key moves the data: `--cfg-options data_root=/my/thumos14` (the
# runtime base's DataRootRunner gives data_root to every TALDataset; the
# paths below are relative to it).
data_root = 'data/thumos14'
ann_file = 'thumos14_gt.json'  # <data_root>/thumos14_gt.json
feature_dir = 'i3d_features'  # <data_root>/i3d_features/<video_id>.npy

num_classes = 20
in_channels = 2048
feature_stride = 4  # video frames between two features
clip_len = 16  # frames of the clip behind each feature
video_fps = 30  # used when the annotation gives no fps
max_seq_len = 2304  # feature steps per training (and test) window
warmup_epochs = 20
max_epochs = 40

model = dict(
    type='TemporalActionLocalizer',
    neck=dict(
        type='TriDetNeck', in_channels=in_channels, embed_dims=512,
        num_levels=6, num_embed_convs=2, num_stem_blocks=2,
        stem_kernel_size=1, kernel_size=1, k=5, mlp_dims=768,
        num_groups=16, drop_path=0.1, layer_scale=1e-4,
        # the published init_conv_vars=0: the SGP convolutions start at
        # zero and, their gated products getting no gradient, stay there
        # (the published model trains LayerNorm + FFN + max-pooling
        # levels); init_std=None trains the SGP branches
        init_std=0., input_noise=0.0005),
    head=dict(
        type='TriDetHead', num_classes=num_classes, in_channels=512,
        feat_channels=512, num_convs=2, strides=(1, 2, 4, 8, 16, 32),
        regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                        (64, 10000)),
        num_bins=16, boundary_kernel_size=3, class_aware_boundaries=True,
        detach_boundary_feats=True, iou_weight_power=0.2,
        center_sample_radius=1.5, init_loss_norm=100., prior_prob=0.01),
    post_processor=dict(
        type='TALPostProcessor', score_thr=0.001, pre_nms_topk=2000,
        # segments shorter than 0.05 feature steps are dropped
        min_duration=0.05 * feature_stride / video_fps))

load_feature = dict(type='LoadTALFeature', feature_stride=feature_stride,
                    fps=video_fps, center=clip_len / 2 / feature_stride)
train_pipeline = [
    load_feature,
    # random windows keeping at least half of an action
    dict(type='TALWindowSample', num_steps=max_seq_len,
         min_action_ratio=0.5),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len, test_mode=True),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='validation',
                 modality='Feature', data_prefix=dict(feature=feature_dir),
                 ignore_ambiguous=True, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='test',
                 modality='Feature', data_prefix=dict(feature=feature_dir),
                 test_mode=True, sliding_window=True,
                 window_overlap=0.5, pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file (follows data_root)
val_evaluator = dict(type='TALMetric', subset='test',
                     tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7],
                     nms=dict(method='soft', sigma=0.5, min_score=0.001),
                     max_per_video=2000)
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.025),
    # no weight decay on norms, biases, level scales and layer scales
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.,
                       custom_keys=dict(scales=dict(decay_mult=0.),
                                        gamma=dict(decay_mult=0.))),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]

# feature mode: no backbone, so no rewiring record; EMA of the weights
custom_hooks = [
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.001,
         priority='ABOVE_NORMAL'),
]

# ActionFormer on EPIC-Kitchens-100 SlowFast features, verb task (feature
# mode: no backbone): OpenTAD's configs/actionformer/
# epic_kitchens_slowfast_verb.py setting by setting: 2304-step windows of
# SlowFast features (32-frame clips every 16 frames of the 30 fps videos,
# 2304 channels), local attention window 9, regression ranges
# (0,4),(2,8),...,(32,inf), loss normaliser 250, AdamW lr 1e-4 wd 0.05,
# 5 warm-up + 15 cosine epochs, batch 2, gradient clipping, EMA; Soft-NMS
# sigma 0.4 with voting 0.75. Published (ActionFormer): average mAP
# 0.1:0.5 verb 23.5; not reproduced here. Scored with the challenge's rules
# (TALMetric protocol 'epic-kitchens-100').
# Annotations: the output of
#   python tools/data/convert_epic_kitchens.py data/epic_kitchens_100 \
#       --train EPIC_100_train.csv --val EPIC_100_validation.csv \
#       --verb-classes EPIC_100_verb_classes.csv \
#       --noun-classes EPIC_100_noun_classes.csv \
#       --video-info EPIC_100_video_info.csv
# (subsets 'train' / 'validation'; epic_kitchens_100_{verb,noun}.json).
_base_ = ['./_base_/re2tal_runtime.py']

data_root = 'data/epic_kitchens_100'
task = 'verb'
ann_file = f'epic_kitchens_100_{task}.json'
feature_dir = 'slowfast_features'  # <data_root>/<feature_dir>/<video>.npy

num_classes = 97
in_channels = 2304
feature_stride = 16  # video frames between two features
clip_len = 32  # frames of the clip behind each feature
video_fps = 30  # the features' frame rate (videos resampled to 30 fps)
max_seq_len = 2304  # feature steps per training (and test) window
warmup_epochs = 5
max_epochs = 20

model = dict(
    type='TemporalActionLocalizer',
    neck=dict(type='ActionFormerTransformerNeck', in_channels=in_channels,
              embed_dims=512, arch=(2, 2, 5), kernel_size=3, num_heads=4,
              window_size=9, max_seq_len=max_seq_len, drop_path=0.1,
              proj_drop=0., input_drop=0., abs_pe=False, embed_norm=True,
              out_norm=True),
    head=dict(type='ActionFormerHead', num_classes=num_classes,
              in_channels=512, feat_channels=512, num_convs=2,
              strides=(1, 2, 4, 8, 16, 32),
              regress_ranges=((0, 4), (2, 8), (4, 16), (8, 32), (16, 64),
                              (32, 10000)),
              center_sample_radius=1.5, prior_prob=0.01,
              init_loss_norm=250., loss_norm_momentum=0.9,
              loss_cls=dict(type='TALSigmoidFocalLoss', alpha=0.25,
                            gamma=2.0),
              loss_reg=dict(type='DIoU1DLoss', mode='diou',
                            loss_weight=1.0)),
    post_processor=dict(type='TALPostProcessor', score_thr=0.001,
                        pre_nms_topk=5000))

load_feature = dict(type='LoadTALFeature', feature_stride=feature_stride,
                    fps=video_fps, center=clip_len / 2 / feature_stride)
train_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len,
         min_action_ratio=0.3),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len, test_mode=True),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='train',
                 modality='Feature', data_prefix=dict(feature=feature_dir),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='validation',
                 modality='Feature', data_prefix=dict(feature=feature_dir),
                 test_mode=True, sliding_window=True,
                 window_overlap=0.5, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='TALMetric', subset='validation',
                     protocol='epic-kitchens-100',
                     nms=dict(method='soft', sigma=0.4, min_score=0.001,
                              voting_thresh=0.75),
                     max_per_video=2000)
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_begin=15, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.001,
         priority='ABOVE_NORMAL'),
]

# Re2TAL paper recipe on THUMOS-14, all but the backbone (each
# configs/re2tal/re2tal_<backbone>_*_thumos14.py adds it, rewired to a
# reversible network): ActionFormer detector trained end to end.
# 1024-frame windows sampled every 2nd frame, 224x224 crops, sliding-window
# test (overlap 0.5), AdamW (detector lr 1e-4, backbone lr 1e-5), AMP,
# gradient clipping, EMA. Annotations: the output of
#   python tools/data/convert_thumos.py data/thumos14/thumos14_gt.json \
#       --val val_Annotation.csv --test test_Annotation.csv \
#       --groundtruth thumos14_test_groundtruth.csv
# (subset 'validation' = THUMOS validation videos = training set here,
# subset 'test' = evaluation set).
_base_ = ['./re2tal_runtime.py']

# ---- paths the user sets --------------------------------------------------
# One key moves the data: `--cfg-options data_root=/my/thumos14`.
# DataRootRunner (runtime base) gives data_root to every TALDataset when the
# Runner is built, after --cfg-options; the paths below are relative to it,
# and TALMetric reads the ground truth of the dataset it evaluates.
data_root = 'data/thumos14'
ann_file = 'thumos14_gt.json'  # <data_root>/thumos14_gt.json
video_dir = 'videos'  # <data_root>/videos/<video_id>.mp4
# a Kinetics-400 recognizer checkpoint of the backbone (set in each config)
load_from = None

num_classes = 20
num_frames = 1024  # frames per window
frame_stride = 2  # sample every 2nd frame
crop_size = 224
video_fps = 30  # THUMOS-14 videos are (nearly all) 30 fps
# sliding test windows (s): the span of `num_frames` frames at `video_fps`
window_duration = num_frames * frame_stride / video_fps
max_epochs = 50  # THUMOS-14 is small: count in epochs of ~200 videos

model = dict(
    type='TemporalActionLocalizer',
    # Re2TAL: the backbone rewired to reversible when the model is built
    rewire=dict(mode='reversible'),
    # backbone, feat_len and neck.in_channels: set by each config
    neck=dict(type='ActionFormerNeck', embed_dims=512,
              num_levels=6, num_heads=4, window_size=19, drop_path=0.1),
    head=dict(type='ActionFormerHead', num_classes=num_classes,
              in_channels=512, feat_channels=512,
              strides=(1, 2, 4, 8, 16, 32),
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000))),
    # no NMS per window: the metric's merge runs the one NMS of a video
    post_processor=dict(
        type='TALPostProcessor', score_thr=0.001, pre_nms_topk=2000),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375],
                           format_shape='NCTHW'))

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomCrop', size=crop_size),
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
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='validation',
                 data_prefix=dict(video=video_dir), ignore_ambiguous=True,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='test',
                 data_prefix=dict(video=video_dir), test_mode=True,
                 window_duration=window_duration, window_overlap=0.5,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file (follows data_root)
val_evaluator = dict(type='TALMetric', subset='test',
                     tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7],
                     nms=dict(method='soft', sigma=0.7, min_score=0.001),
                     max_per_video=2000)
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    # backbone lr = 1e-4 * 0.1 = 1e-5
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1))),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=max_epochs,
         T_max=max_epochs - 5, eta_min=1e-8, convert_to_iter_based=True),
]

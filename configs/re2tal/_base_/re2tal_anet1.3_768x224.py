# Re2TAL paper recipe on ActivityNet-1.3, all but the backbone (each
# configs/re2tal/re2tal_<backbone>_*_anet1.3.py adds it, rewired to a
# reversible network): ActionFormer detector trained end to end.
# Each video is resampled to 768 frames (whole video, no windows), 224x224
# crops; class-agnostic detection relabelled with an external video-level
# classifier's top-2 classes; AdamW (detector lr 1e-3, backbone lr 1e-5),
# 15 epochs, AMP, gradient clipping, EMA. Annotations: the output of
#   python tools/data/convert_activitynet.py anet_anno_action.json \
#       video_info_new.csv data/activitynet/anet1.3_gt.json
# (subsets 'training' / 'validation').
_base_ = ['./re2tal_runtime.py']

# ---- paths the user sets --------------------------------------------------
# One key moves the data: `--cfg-options data_root=/my/activitynet`.
# DataRootRunner (runtime base) gives data_root to every TALDataset when the
# Runner is built, after --cfg-options; the paths below are relative to it,
# and TALMetric reads the ground truth of the dataset it evaluates.
data_root = 'data/activitynet'
ann_file = 'anet1.3_gt.json'  # <data_root>/anet1.3_gt.json
video_dir = 'videos'  # <data_root>/videos/<video_id>.mp4 (no 'v_')
# a Kinetics-400 recognizer checkpoint of the backbone (set in each config)
load_from = None
# Video-level class scores {video_id: [200 scores]} (e.g. the CUHK / TSN
# classifier results used by BMN, G-TAD and ActionFormer, converted to this
# layout); None keeps the detector's own (class-agnostic) best class.
external_classifier = None

num_classes = 200
num_frames = 768  # every video resampled to this many frames
crop_size = 224
max_epochs = 15

model = dict(
    type='TemporalActionLocalizer',
    # Re2TAL: the backbone rewired to reversible when the model is built
    rewire=dict(mode='reversible'),
    # backbone, feat_len and neck.in_channels: set by each config
    neck=dict(type='ActionFormerNeck', embed_dims=512,
              num_levels=6, num_heads=4, window_size=9, drop_path=0.1),
    head=dict(type='ActionFormerHead', num_classes=num_classes,
              in_channels=512, feat_channels=512,
              strides=(1, 2, 4, 8, 16, 32),
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000))),
    # class-agnostic detections fused with the external classifier's top-2
    post_processor=dict(
        type='TALPostProcessor', score_thr=0.001, pre_nms_topk=2000,
        class_agnostic=True, external_classifier=external_classifier,
        external_topk=2,
        nms=dict(method='soft', iou_threshold=0.1, sigma=0.75,
                 min_score=0.001, max_num=100)),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375],
                           format_shape='NCTHW'))

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames, mode='resize'),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomCrop', size=crop_size),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames, mode='resize',
         test_mode=True),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='training',
                 data_prefix=dict(video=video_dir), skip_missing=True,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='validation',
                 data_prefix=dict(video=video_dir), test_mode=True,
                 skip_missing=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file (follows data_root)
val_evaluator = dict(type='TALMetric', subset='validation', nms=None,
                     max_per_video=200,
                     tiou_thresholds=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
                                      0.85, 0.9, 0.95])
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    # backbone lr = 1e-3 * 0.01 = 1e-5
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.01))),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=max_epochs,
         T_max=max_epochs - 5, eta_min=1e-8, convert_to_iter_based=True),
]

# ActionFormer on HACS Segments v1.1.1 SlowFast features (feature mode: no
# backbone): OpenTAD's configs/actionformer/hacs_slowfast.py setting by
# setting: SlowFast-101 features of 32-frame clips every 8 frames of the
# 15 fps videos (2304 channels), 960-step windows (OpenTAD pads every
# video to 960 steps: one window covers 512 s), segments shorter than 1%
# of their video left out of training, a class-agnostic head (label
# smoothing 0.1, loss normaliser 400) with 256 channels, local attention
# window 13 on the first 5 levels and global on the last, absolute position
# embedding, input dropout 0.1; AdamW lr 1e-3 wd 0.03, 5 warm-up epochs of a
# 15-epoch cosine, batch 16, gradient clipping, EMA; class-agnostic
# Soft-NMS sigma 0.75 (100 segments, voting 0.7), then the external
# video-level classifier's top-3 classes (OpenTAD's TCANet HACS classifier
# validation94.32.json, converted to {video_id: [200 scores]}: a path you
# fill in, `model.post_processor.external_classifier`, needed to evaluate).
# Published (OpenTAD's ActionFormer SlowFast, not reproduced here): average
# mAP 0.5:0.95 37.71. Scored with the ActivityNet protocol on the
# 'validation' subset.
# Annotations: the output of
#   python tools/data/convert_anet_style.py hacs \
#       HACS_segments_v1.1.1.json data/hacs/hacs_gt.json
# (the release's own subsets 'training' / 'validation' / 'testing').
_base_ = ['./actionformer_slowfast-feature_epic-kitchens-100-verb.py']

data_root = 'data/hacs'
ann_file = 'hacs_gt.json'
feature_dir = 'slowfast_features'  # <data_root>/<feature_dir>/<video>.npy
external_classifier = None
num_classes = 200  # dataset classes; the head has one (actionness)
in_channels = 2304
feature_stride = 8
clip_len = 32  # OpenTAD's offset_frames 16 = half a clip
video_fps = 15
max_seq_len = 960
warmup_epochs = 5
max_epochs = 15

model = dict(
    neck=dict(in_channels=in_channels, embed_dims=256,
              max_seq_len=max_seq_len, window_size=(13, 13, 13, 13, 13, -1),
              input_drop=0.1, abs_pe=True),
    head=dict(num_classes=1, in_channels=256, feat_channels=256,
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000)),
              label_smoothing=0.1, init_loss_norm=400.),
    post_processor=dict(
        pre_nms_topk=2000, class_agnostic=True,
        external_classifier=external_classifier, external_topk=3,
        nms=dict(method='soft', sigma=0.75, min_score=0.001, max_num=100,
                 class_agnostic=True, voting_thresh=0.7)))
load_feature = dict(type='LoadTALFeature', feature_stride=feature_stride,
                    fps=video_fps, center=clip_len / 2 / feature_stride)
train_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len,
         min_action_ratio=0.5, crop_ratio=(0.9, 1.0)),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len, test_mode=True),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(batch_size=16, dataset=dict(
    ann_file=ann_file, subset='training', pipeline=train_pipeline,
    data_prefix=dict(feature=feature_dir), min_segment_ratio=0.01,
    class_agnostic=True, skip_missing=True))
val_dataloader = dict(dataset=dict(
    ann_file=ann_file, subset='validation', pipeline=test_pipeline,
    data_prefix=dict(feature=feature_dir), skip_missing=True))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file; each video's windows
# already NMS-ed and relabelled by the post-processor
val_evaluator = dict(_delete_=True, type='TALMetric', subset='validation',
                     protocol='activitynet', nms=None, max_per_video=300)
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_begin=8, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.03))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]

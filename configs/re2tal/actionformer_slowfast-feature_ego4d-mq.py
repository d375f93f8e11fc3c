# ActionFormer on Ego4D Moment Queries SlowFast features (feature mode: no
# backbone): OpenTAD's configs/actionformer/ego4d_slowfast.py setting by
# setting: 1024-step windows of SlowFast features (32-frame clips every 16
# frames of the 30 fps clips, 2304 channels; test windows without overlap),
# encoder arch (2, 2, 8): 9 levels, strides 1..256, local attention window 9
# on the first 6 levels and global on the last 3, absolute position
# embedding, input dropout 0.2, projection dropout 0.1; 110 classes; AdamW
# lr 1e-4 wd 0.05, 5 warm-up epochs of a 25-epoch cosine stopped at 20,
# batch 2, gradient clipping, EMA; Soft-NMS sigma 2.0 with voting 0.95.
# Published (OpenTAD's ActionFormer SlowFast, not reproduced here): average
# mAP 0.1:0.5 16.26. Scored as the challenge does (TALMetric protocol
# 'ego4d-mq': mAP at 0.1:0.1:0.5 and Recall@1x / 5x at each threshold).
# (AdaTAD's end-to-end Ego4D-MQ recipe, 1800 x 4 = 7,200 frames a window,
# runs an InternVideo backbone this repository does not have.)
# Annotations: the output of
#   python tools/data/convert_ego4d_mq.py data/ego4d_mq/ego4d_mq.json \
#       --train moments_train.json --val moments_val.json
# (subsets 'train' / 'validation', one entry per clip).
_base_ = ['./actionformer_slowfast-feature_epic-kitchens-100-verb.py']

data_root = 'data/ego4d_mq'
ann_file = 'ego4d_mq.json'
feature_dir = 'slowfast_features'  # <data_root>/<feature_dir>/<clip>.npy
num_classes = 110
in_channels = 2304
feature_stride = 16
clip_len = 32  # OpenTAD's offset_frames 16 = half a clip
video_fps = 30
max_seq_len = 1024
warmup_epochs = 5
max_epochs = 20  # OpenTAD's end_epoch (its cosine runs to 25)

model = dict(
    neck=dict(in_channels=in_channels, arch=(2, 2, 8),
              max_seq_len=max_seq_len,
              window_size=(9, 9, 9, 9, 9, 9, -1, -1, -1),
              proj_drop=0.1, input_drop=0.2, abs_pe=True),
    head=dict(num_classes=num_classes,
              strides=(1, 2, 4, 8, 16, 32, 64, 128, 256),
              regress_ranges=((0, 4), (2, 8), (4, 16), (8, 32), (16, 64),
                              (32, 128), (64, 256), (128, 512),
                              (256, 10000)),
              init_loss_norm=100.))
load_feature = dict(type='LoadTALFeature', feature_stride=feature_stride,
                    fps=video_fps, center=clip_len / 2 / feature_stride)
train_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len,
         min_action_ratio=0.3, crop_ratio=(0.9, 1.0)),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len, test_mode=True),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(dataset=dict(
    ann_file=ann_file, subset='train', pipeline=train_pipeline,
    data_prefix=dict(feature=feature_dir)))
val_dataloader = dict(dataset=dict(
    ann_file=ann_file, subset='validation', pipeline=test_pipeline,
    data_prefix=dict(feature=feature_dir), window_overlap=0.))
test_dataloader = val_dataloader
val_evaluator = dict(subset='validation', protocol='ego4d-mq',
                     nms=dict(sigma=2.0, voting_thresh=0.95))
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_begin=12, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=25 - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]

# ActionFormer on FineAction VideoMAE-H features (feature mode: no
# backbone): OpenTAD's configs/actionformer/fineaction_videomae_h.py
# setting by setting: InternVideo's VideoMAE-H (Kinetics-700) features of
# 16-frame clips every 16 frames of the 30 fps videos (1280 channels), every
# video resized to 192 steps (OpenTAD's AnetResizeDataset, resize_length
# 192; OpenTAD interpolates the features, ResizeFeat 'torchvision_align',
# where TALWindowSample(mode='resize') takes the feature at the centre of
# each of the 192 bins), segments shorter than 1% of their video left out
# of training, a class-agnostic head (label smoothing 0.1, regression loss
# weight 2, loss normaliser 200) with 256 channels, local attention window
# 7 on the first 5 levels and global on the last, absolute position
# embedding; AdamW lr 1e-3 wd 0.05, 5 warm-up epochs of a 20-epoch cosine,
# batch 16, gradient clipping, EMA; class-agnostic Soft-NMS sigma 0.75 (100
# segments, voting 0.9), then the external video-level classifier's top-2
# classes (OpenTAD's new_swinB_1x1x256_views2x3_max_label_avg_prob.json,
# converted to {video_id: [106 scores]}: a path you fill in,
# `model.post_processor.external_classifier`, needed to evaluate).
# Published (OpenTAD's ActionFormer VideoMAE_H_K700, not reproduced here):
# average mAP 0.5:0.95 19.32. Scored with the ActivityNet protocol on the
# 'validation' subset.
# Annotations: the output of
#   python tools/data/convert_anet_style.py fineaction \
#       annotations_gt.json data/fineaction/fineaction_gt.json
# (the release's own subsets and label_id class list).
_base_ = ['./actionformer_slowfast-feature_hacs.py']

data_root = 'data/fineaction'
ann_file = 'fineaction_gt.json'
feature_dir = 'videomae_h_features'  # <data_root>/<feature_dir>/<id>.npy
external_classifier = None
num_classes = 106  # dataset classes; the head has one (actionness)
in_channels = 1280
feature_stride = 16
clip_len = 16  # OpenTAD's offset_frames 8 = half a clip
video_fps = 30
feat_len = 192  # steps per video (OpenTAD's resize_length)
warmup_epochs = 5
max_epochs = 20

model = dict(
    neck=dict(in_channels=in_channels, max_seq_len=feat_len,
              window_size=(7, 7, 7, 7, 7, -1), input_drop=0.),
    head=dict(init_loss_norm=200., loss_reg=dict(loss_weight=2.0)),
    post_processor=dict(
        external_classifier=external_classifier, external_topk=2,
        nms=dict(voting_thresh=0.9)))
load_feature = dict(type='LoadTALFeature', feature_stride=feature_stride,
                    fps=video_fps, center=clip_len / 2 / feature_stride)
train_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=feat_len, mode='resize',
         resize_sampling='center'),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=feat_len, mode='resize',
         resize_sampling='center', test_mode=True),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(dataset=dict(
    ann_file=ann_file, pipeline=train_pipeline,
    data_prefix=dict(feature=feature_dir)))
val_dataloader = dict(dataset=dict(
    ann_file=ann_file, pipeline=test_pipeline,
    data_prefix=dict(feature=feature_dir), sliding_window=False))
test_dataloader = val_dataloader

train_cfg = dict(max_epochs=max_epochs, val_begin=10, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]

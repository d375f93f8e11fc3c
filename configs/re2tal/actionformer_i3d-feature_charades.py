# ActionFormer on Charades I3D RGB features (feature mode; OpenTAD's
# configs/actionformer/charades_i3d_rgb.py recipe on our detector):
# multi-label, overlapping segments; average mAP at 0.1:0.1:0.9 (TALMetric
# protocol 'charades', as OpenTAD scores it). Not reproduced here.
# Annotations: the output of
#   python tools/data/convert_charades.py data/charades/charades.json \
#       --train Charades_v1_train.csv --test Charades_v1_test.csv
_base_ = ['./actionformer_slowfast-feature_epic-kitchens-100-verb.py']

data_root = 'data/charades'
ann_file = 'charades.json'
feature_dir = 'i3d_features'
num_classes = 157
in_channels = 1024
feature_stride = 8
clip_len = 16
video_fps = 24
max_seq_len = 512

model = dict(
    neck=dict(in_channels=in_channels, max_seq_len=max_seq_len,
              window_size=-1),
    head=dict(num_classes=num_classes,
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000)),
              init_loss_norm=100.))
load_feature = dict(type='LoadTALFeature', feature_stride=feature_stride,
                    fps=video_fps, center=clip_len / 2 / feature_stride)
train_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len,
         min_action_ratio=0.5),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    load_feature,
    dict(type='TALWindowSample', num_steps=max_seq_len, test_mode=True),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(dataset=dict(
    ann_file=ann_file, subset='training', pipeline=train_pipeline,
    data_prefix=dict(feature=feature_dir)))
val_dataloader = dict(dataset=dict(
    ann_file=ann_file, subset='testing', pipeline=test_pipeline,
    data_prefix=dict(feature=feature_dir), sliding_window=True))
test_dataloader = val_dataloader
val_evaluator = dict(subset='testing', protocol='charades')
test_evaluator = val_evaluator

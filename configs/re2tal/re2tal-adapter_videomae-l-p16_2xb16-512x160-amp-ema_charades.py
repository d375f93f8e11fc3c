# Reversible temporal adapters on Charades, end to end: OpenTAD's AdaTAD
# Charades recipe (configs/adatad/charades/
# e2e_charades_videomae_l_512x1_160_adapter.py: 512 frames a window, every
# 4th frame of the 30 fps videos (Charades_v1_480_30fps), at 160x160, 2 GPUs
# x 16 videos) with its VideoMAE ViT-L/16 (Kinetics-400) frozen, a temporal
# adapter after each of the 24 blocks, and the block stack rewired to one
# reversible stage with the lowest-memory preset (memory='floor') instead of
# AdaTAD's checkpointing. Multi-label, overlapping segments (157 classes);
# global attention with an absolute position embedding, encoder arch
# (2, 2, 7): 8 levels, strides 1..128, input dropout 0.3; adapters at lr
# 2e-4; 5 warm-up epochs of a 20-epoch cosine; Soft-NMS sigma 0.3 with
# voting 0.7. Published (AdaTAD, not reproduced here, not rewired): average
# mAP 0.1:0.9 32.31. Scored as OpenTAD scores it (TALMetric protocol
# 'charades': ActivityNet's rules at tIoU 0.1:0.1:0.9).
# Annotations: the output of
#   python tools/data/convert_charades.py data/charades/charades.json \
#       --train Charades_v1_train.csv --test Charades_v1_test.csv
# (subsets 'training' / 'testing'); videos in <data_root>/videos/.
_base_ = ['./re2tal-adapter_videomae-l-p16_2xb2-768x160-amp-ema_'
          'multithumos.py']

data_root = 'data/charades'
ann_file = 'charades.json'
num_classes = 157
num_frames = 512  # frames per window (OpenTAD's window_size 512, x 1)
frame_stride = 4  # its feature_stride 4 of the 30 fps videos
feat_len = 512
crop_size = 160
max_epochs = 20
warmup_epochs = 5

model = dict(
    feat_len=feat_len,
    neck=dict(arch=(2, 2, 7), max_seq_len=feat_len, abs_pe=True,
              input_drop=0.3),
    head=dict(num_classes=num_classes,
              strides=(1, 2, 4, 8, 16, 32, 64, 128),
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 128), (128, 256), (256, 10000))),
    post_processor=dict(pre_nms_topk=2000))

train_pipeline = [
    dict(type='TALVideoInit'),
    # OpenTAD's random_trunc with trunc_thresh 0.5
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride, min_action_ratio=0.5,
         partial_actions=False, crop_ratio=(0.9, 1.0)),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 182)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='ColorJitter'),  # OpenTAD adds ImgAug (README table)
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride, test_mode=True),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, crop_size)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(batch_size=16, dataset=dict(
    ann_file=ann_file, subset='training', pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, dataset=dict(
    ann_file=ann_file, subset='testing', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    subset='testing', protocol='charades',
    nms=dict(method='soft', sigma=0.3, min_score=0., max_num=1000,
             voting_thresh=0.7),
    max_per_video=1000)
test_evaluator = val_evaluator

# OpenTAD evaluates every epoch from epoch 7 on
train_cfg = dict(max_epochs=max_epochs, val_begin=7, val_interval=1)
# detector lr 1e-4; of the backbone only the adapters train, at 2e-4
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=2.0, decay_mult=1.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]

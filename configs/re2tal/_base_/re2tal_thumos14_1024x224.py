# Re2TAL recipe on THUMOS-14, all but the backbone (each
# configs/re2tal/re2tal_<backbone>_*_thumos14.py adds it, rewired to a
# reversible network): the paper authors' OpenTAD recipe
# (configs/re2tal/e2e_thumos_re2tal_actionformer_*.py of sming256/OpenTAD),
# setting by setting; configs/re2tal/README.md has the table (setting,
# OpenTAD, ours, why where they differ).
# ActionFormer detector (OpenTAD's conv-attention encoder, global attention
# over 512 positions) trained end to end on 1024-frame windows sampled every
# 2nd frame, features resampled to 512 positions; 224x224 crops;
# sliding-window test (overlap 0.5); every backbone normalization layer
# frozen; AdamW (detector lr 1e-4, backbone lr 1e-5), 5 warm-up epochs then
# a cosine of 1500 epochs stopped at 120; AMP, gradient clipping, EMA.
# OpenTAD trains it on 2 GPUs x 2 videos. Annotations: the output of
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
# the K400-finetuned rewired backbone (set in each config)
load_from = None

num_classes = 20
num_frames = 1024  # frames per window (OpenTAD: 512 snippets x 2)
frame_stride = 2  # sample every 2nd frame (snippet stride 4 / 2)
feat_len = 512  # detector positions per window: one every 4 frames
crop_size = 224
max_epochs = 120  # OpenTAD's end_epoch (its cosine runs to 1500)
warmup_epochs = 5

model = dict(
    type='TemporalActionLocalizer',
    # Re2TAL: the backbone rewired to reversible when the model is built
    rewire=dict(mode='reversible'),
    # OpenTAD's norm_eval: every backbone BN / LN / GN in eval mode, frozen
    frozen_backbone_norms=True,
    feat_len=feat_len,
    # backbone and neck.in_channels: set by each config.
    # OpenTAD's ActionFormer: Conv1DTransformerProj + FPNIdentity
    neck=dict(type='ActionFormerTransformerNeck', embed_dims=512,
              arch=(2, 2, 5), kernel_size=3, num_heads=4,
              window_size=-1,  # global attention (n_mha_win_size=-1)
              max_seq_len=feat_len, drop_path=0.1, proj_drop=0.,
              input_drop=0., abs_pe=False, embed_norm=True, out_norm=True,
              norm_eps=1e-6, mask_outputs=False),
    head=dict(type='ActionFormerHead', num_classes=num_classes,
              in_channels=512, feat_channels=512, num_convs=2,
              strides=(1, 2, 4, 8, 16, 32),
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000)),
              center_sample_radius=1.5, prior_prob=0.01,
              init_loss_norm=100., loss_norm_momentum=0.9,
              label_smoothing=0., norm_eps=1e-6, tower_bias=False,
              loss_cls=dict(type='TALSigmoidFocalLoss', alpha=0.25,
                            gamma=2.0),
              loss_reg=dict(type='DIoU1DLoss', mode='diou',
                            loss_weight=1.0)),
    # no NMS per window: the metric's per-video merge runs the one NMS
    post_processor=dict(type='TALPostProcessor', score_thr=0.001,
                        pre_nms_topk=2000, nms=None),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375],
                           format_shape='NCTHW'))

train_pipeline = [
    dict(type='TALVideoInit'),
    # OpenTAD's random_trunc: windows keeping >= 75% of an action (only
    # such actions kept), short videos cut to 90-100% of their length
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride, min_action_ratio=0.75,
         partial_actions=False, crop_ratio=(0.9, 1.0)),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    # OpenTAD adds ImgAug(transforms='default') here: imgaug does not run
    # on numpy >= 1.24 (README table)
    dict(type='ColorJitter'),
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
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='validation',
                 data_prefix=dict(video=video_dir), ignore_ambiguous=True,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='test',
                 data_prefix=dict(video=video_dir), test_mode=True,
                 # windows of the test pipeline's num_frames frames, on
                 # each video's own frame grid
                 sliding_window=True, window_overlap=0.5,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file (follows data_root); the
# one NMS of each video's merged windows: OpenTAD's soft-NMS settings
val_evaluator = dict(type='TALMetric', subset='test',
                     tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7],
                     nms=dict(method='soft', sigma=0.7, min_score=0.001,
                              max_num=2000),
                     max_per_video=2000)
test_evaluator = val_evaluator

# OpenTAD evaluates every 5 epochs from epoch 80 on
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_begin=80, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    # OpenTAD's paramwise groups: the backbone at lr 1e-5, weight decay
    # 0.05 on all of it; in the detector no decay on biases, norms and the
    # per-level / per-branch scales (Scale, AffineDropPath as LayerScale)
    paramwise_cfg=dict(
        norm_decay_mult=0., bias_decay_mult=0.,
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.),
            'head.scales': dict(decay_mult=0.),
            '.drop_path_': dict(decay_mult=0.),
        }),
    clip_grad=dict(max_norm=1.0))
# OpenTAD's LinearWarmupCosineAnnealingLR, per iteration: linear from 0
# over 5 epochs, then a cosine to 1e-8 over 1500 - 5 epochs, stopped at 120
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=1500 - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]
# 2 GPUs x 2 videos, as OpenTAD trains it; scale lr if you change it
auto_scale_lr = dict(enable=False, base_batch_size=4)

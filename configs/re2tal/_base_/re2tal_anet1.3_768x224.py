# Re2TAL recipe on ActivityNet-1.3, all but the backbone (each
# configs/re2tal/re2tal_<backbone>_*_anet1.3.py adds it, rewired to a
# reversible network): the paper authors' OpenTAD recipe
# (configs/re2tal/e2e_anet_re2tal_actionformer_*.py of sming256/OpenTAD),
# setting by setting; configs/re2tal/README.md has the table.
# Each video resampled to 768 frames (whole video, no windows), features to
# 192 positions; 224x224 crops; a class-agnostic ActionFormer detector
# (OpenTAD's encoder with an absolute position embedding) whose segments are
# relabelled with an external video-level classifier's top-2 classes
# (CUHK's); every backbone normalization layer frozen; AdamW (detector lr
# 1e-3, backbone lr 1e-5), 15 epochs, AMP, gradient clipping, EMA. OpenTAD
# trains it on 4 GPUs x 8 videos. Annotations: the output of
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
# the K400-finetuned rewired backbone (set in each config)
load_from = None
# Video-level class scores {video_id: [200 scores]} (the CUHK classifier
# results OpenTAD uses, cuhk_val_simp_7.json, converted to this layout):
# needed to evaluate, since the detector is class-agnostic.
external_classifier = None

num_classes = 200
num_frames = 768  # every video resampled to this many frames
feat_len = 192  # detector positions per video (OpenTAD's resize_length)
crop_size = 224
max_epochs = 15
warmup_epochs = 5

model = dict(
    type='TemporalActionLocalizer',
    # Re2TAL: the backbone rewired to reversible when the model is built
    rewire=dict(mode='reversible'),
    # OpenTAD's norm_eval: every backbone BN / LN / GN in eval mode, frozen
    frozen_backbone_norms=True,
    feat_len=feat_len,
    # backbone and neck.in_channels: set by each config
    neck=dict(type='ActionFormerTransformerNeck', embed_dims=256,
              arch=(2, 2, 5), kernel_size=3, num_heads=4,
              window_size=-1,  # global attention (n_mha_win_size=-1)
              max_seq_len=feat_len, drop_path=0.1, proj_drop=0.,
              input_drop=0., abs_pe=True, embed_norm=True, out_norm=True,
              norm_eps=1e-6, mask_outputs=False),
    # one class: actionness; classes come from the external classifier
    head=dict(type='ActionFormerHead', num_classes=1,
              in_channels=256, feat_channels=256, num_convs=2,
              strides=(1, 2, 4, 8, 16, 32),
              regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000)),
              center_sample_radius=1.5, prior_prob=0.01,
              init_loss_norm=200., loss_norm_momentum=0.9,
              label_smoothing=0.1, norm_eps=1e-6, tower_bias=False,
              loss_cls=dict(type='TALSigmoidFocalLoss', alpha=0.25,
                            gamma=2.0),
              loss_reg=dict(type='DIoU1DLoss', mode='diou',
                            loss_weight=2.0)),
    # one window per video: OpenTAD's class-agnostic soft-NMS with segment
    # voting, then the external classifier's top-2 classes
    post_processor=dict(
        type='TALPostProcessor', score_thr=0.001, pre_nms_topk=2000,
        class_agnostic=True, external_classifier=external_classifier,
        external_topk=2,
        nms=dict(method='soft', sigma=0.7, min_score=0.001, max_num=100,
                 class_agnostic=True, voting_thresh=0.9)),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375],
                           format_shape='NCTHW'))

train_pipeline = [
    dict(type='TALVideoInit'),
    # OpenTAD's resize: one frame at the centre of each of 768 equal bins
    dict(type='TALWindowSample', num_steps=num_frames, mode='resize',
         resize_sampling='center'),
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
    dict(type='TALWindowSample', num_steps=num_frames, mode='resize',
         resize_sampling='center', test_mode=True),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, crop_size)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    # OpenTAD's filter_gt / class_agnostic: segments shorter than 1% of
    # their video left out of training, every training label 0
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='training',
                 data_prefix=dict(video=video_dir), skip_missing=True,
                 min_segment_ratio=0.01, class_agnostic=True,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='TALDataset', ann_file=ann_file, subset='validation',
                 data_prefix=dict(video=video_dir), test_mode=True,
                 skip_missing=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth: the evaluated dataset's ann_file (follows data_root); one
# window per video, already NMS-ed and relabelled by the post-processor
val_evaluator = dict(type='TALMetric', subset='validation', nms=None,
                     max_per_video=200,
                     tiou_thresholds=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
                                      0.85, 0.9, 0.95])
test_evaluator = val_evaluator

# OpenTAD evaluates every epoch from epoch 8 on
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_begin=8, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    # OpenTAD's paramwise groups: the backbone at lr 1e-5 (1e-3 x 0.01),
    # weight decay 0.05 on all of it; in the detector no decay on biases,
    # norms and the per-level / per-branch scales
    paramwise_cfg=dict(
        norm_decay_mult=0., bias_decay_mult=0.,
        custom_keys={
            'backbone': dict(lr_mult=0.01, decay_mult=1.),
            'head.scales': dict(decay_mult=0.),
            '.drop_path_': dict(decay_mult=0.),
        }),
    clip_grad=dict(max_norm=1.0))
# OpenTAD's LinearWarmupCosineAnnealingLR, per iteration
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=1))
# 4 GPUs x 8 videos, as OpenTAD trains it; scale lr if you change it
auto_scale_lr = dict(enable=False, base_batch_size=32)

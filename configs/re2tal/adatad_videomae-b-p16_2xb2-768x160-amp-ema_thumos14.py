# AdaTAD (Liu et al., CVPR 2024) on THUMOS-14: VideoMAE ViT-B/16
# (Kinetics-400) frozen, a temporal-informative adapter after every block,
# the blocks checkpointed (not rewired); the paper authors' OpenTAD recipe
# (configs/adatad/thumos/e2e_thumos_videomae_b_768x1_160_adapter.py: average
# mAP 71.14 there, 2 GPUs x 2 videos) setting by setting, on our THUMOS-14
# recipe base (data layout, detector, runtime). 768-frame windows sampled
# every 4th frame, cut into 16-frame clips (ClipBatchedViT), features
# resampled to 768 positions, 160x160 crops; the adapters at lr 1e-4.
# configs/re2tal/re2tal-adapter_videomae-b-p16_*_thumos14.py is this recipe
# with the backbone rewired to a reversible network.
_base_ = ['./_base_/re2tal_thumos14_1024x224.py']

# a VideoMAE ViT-B/16 Kinetics-400 recognizer checkpoint (MMAction2 model
# zoo, vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400_*.pth): its
# `backbone.*` weights are loaded, the temporal adapters are new (reported
# as such), `cls_head.*` ignored. A path you fill in; nothing is downloaded.
load_from = None

num_frames = 768  # frames per window (OpenTAD: 768 snippets x 1)
frame_stride = 4  # snippet stride 4 / scale factor 1
feat_len = 768
crop_size = 160
max_epochs = 60  # OpenTAD's end_epoch (its cosine runs to 100)
warmup_epochs = 5

model = dict(
    # AdaTAD's ViT is a plain residual network: not rewired
    rewire=None,
    # OpenTAD's norm_eval=False (the frozen backbone's LayerNorms have no
    # statistics; the adapters have no norms)
    frozen_backbone_norms=False,
    feat_len=feat_len,
    backbone=dict(
        type='ClipBatchedViT',
        img_size=224,
        patch_size=16,
        embed_dims=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4,
        qkv_bias=True,
        num_frames=16,  # clip length: the position embedding's
        tubelet_size=2,
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        # AdaTAD pools with the checkpoint's fc_norm (no final norm)
        use_mean_pooling=True,
        # every block; the original parameters are frozen
        temporal_adapter=dict(reduction=4, kernel_size=3),
        with_cp=True),
    neck=dict(in_channels=768, max_seq_len=feat_len))

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride, min_action_ratio=0.75,
         partial_actions=False, crop_ratio=(0.9, 1.0)),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 182)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    # OpenTAD adds ImgAug(transforms='default') here (README table)
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# AdaTAD's NMS has no score floor
val_evaluator = dict(nms=dict(min_score=0.))
test_evaluator = val_evaluator

# OpenTAD evaluates every 2 epochs from epoch 40 on
train_cfg = dict(max_epochs=max_epochs, val_begin=40, val_interval=2)
# detector lr 1e-4; of the backbone only the temporal adapters train (the
# rest has requires_grad=False, no optimizer state), at lr 1e-4
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=1.0, decay_mult=1.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=100 - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=2))

# AdaTAD on THUMOS-14 at its largest setting: VideoMAE V2-g/14 (1B
# parameters, Kinetics-710) frozen, temporal adapters in blocks 20-39, the
# blocks checkpointed (not rewired); OpenTAD's
# configs/adatad/thumos/e2e_thumos_videomaev2_g_768x2_224_adapter.py
# (average mAP 77.07 there, 2 GPUs x 2 videos): 1536-frame windows sampled
# every 2nd frame, features resampled to 768 positions, 224x224 crops, the
# adapters at lr 2e-4, 50 epochs. Everything else as the ViT-B AdaTAD
# config this one derives from.
_base_ = ['./adatad_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py']

# a VideoMAE V2-g/14 checkpoint (Kinetics-710 fine-tuned; keys as
# mmaction2's VisionTransformer): a path you fill in, nothing is downloaded
load_from = None

num_frames = 1536  # OpenTAD: 768 snippets x 2
frame_stride = 2  # snippet stride 4 / scale factor 2
crop_size = 224
max_epochs = 50  # OpenTAD's end_epoch (its cosine runs to 100)

model = dict(
    backbone=dict(
        patch_size=14,
        embed_dims=1408,
        depth=40,
        num_heads=16,
        mlp_ratio=48 / 11,
        adapter_blocks=list(range(20, 40))),
    # 1536 frames -> 768 steps (tubelet 2) = feat_len
    neck=dict(in_channels=1408))

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride, min_action_ratio=0.75,
         partial_actions=False, crop_ratio=(0.9, 1.0)),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
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

# OpenTAD evaluates every 2 epochs from epoch 37 on
train_cfg = dict(max_epochs=max_epochs, val_begin=38, val_interval=2)
# the adapters at 2e-4 (OpenTAD's ViT-S base config, kept for V2-g)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=2.0, decay_mult=1.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5,
         end=max_epochs, T_max=100 - 5, eta_min=1e-8,
         convert_to_iter_based=True),
]

# Reversible temporal adapters on THUMOS-14: VideoMAE ViT-B/16 (Kinetics-400)
# frozen, a temporal adapter (AdaTAD, Liu et al. CVPR 2024) after every
# block, the whole block stack rewired to one reversible stage (attention,
# MLP and temporal adapter: three residual functions per block, and a no-op
# one keeping the streams' roles, so zero adapters change nothing). 768-frame
# windows cut into 16-frame clips (ClipBatchedViT), 160x160 crops. Detector
# and schedule: our THUMOS-14 recipe (_base_/re2tal_thumos14_1024x224.py);
# the backbone's trainable part (the temporal adapters) at AdaTAD's lr 1e-4.
_base_ = ['./_base_/re2tal_thumos14_1024x224.py']

# a VideoMAE ViT-B/16 Kinetics-400 recognizer checkpoint (MMAction2 model
# zoo, vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400_*.pth): its
# `backbone.*` weights are loaded, the temporal adapters are new (reported
# as such), `cls_head.*` ignored. A path you fill in; nothing is downloaded.
load_from = None

num_frames = 768
frame_stride = 2
crop_size = 160
video_fps = 30
window_duration = num_frames * frame_stride / video_fps

model = dict(
    # SDPA attention (no N x N matrix); the function is unchanged
    rewire=dict(mode='reversible', attention='sdpa'),
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
        use_mean_pooling=False,
        # every block; the original parameters are frozen
        temporal_adapter=dict(reduction=4, kernel_size=3)),
    neck=dict(in_channels=768))

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 182)),
    dict(type='RandomCrop', size=crop_size),
    dict(type='Flip', flip_ratio=0.5),
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
val_dataloader = dict(dataset=dict(window_duration=window_duration,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader

# detector lr 1e-4; the backbone's trainable parameters (temporal adapters
# only: the rest has requires_grad=False, no optimizer state) at 1e-4
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))

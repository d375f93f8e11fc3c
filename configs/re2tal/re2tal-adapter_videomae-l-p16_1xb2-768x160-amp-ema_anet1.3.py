# Reversible temporal adapters on ActivityNet-1.3: VideoMAE ViT-L/16
# (Kinetics-400) frozen, a temporal adapter (AdaTAD, Liu et al. CVPR 2024)
# after every block, the block stack rewired to one reversible stage
# (memory='floor'). Every video resampled to 768 frames, cut into 16-frame
# clips, 160x160 crops. Detector and schedule: our ActivityNet-1.3 recipe
# (_base_/re2tal_anet1.3_768x224.py: detector lr 1e-3); the temporal
# adapters at AdaTAD's lr 1e-4.
_base_ = ['./_base_/re2tal_anet1.3_768x224.py']

# a VideoMAE ViT-L/16 Kinetics-400 recognizer checkpoint (MMAction2 model
# zoo, vit-large-p16_videomae-k400-pre_16x4x1_kinetics-400_*.pth): a path
# you fill in, nothing is downloaded
load_from = None

num_frames = 768
crop_size = 160

model = dict(
    # piecewise recompute (SDPA head groups, token slices): the lowest
    # memory and, on ViT, the faster preset (README memory table)
    rewire=dict(mode='reversible', memory='floor'),
    # the frozen ViT's LayerNorms have no statistics; nothing to freeze more
    frozen_backbone_norms=False,
    backbone=dict(
        type='ClipBatchedViT',
        img_size=224,
        patch_size=16,
        embed_dims=1024,
        depth=24,
        num_heads=16,
        mlp_ratio=4,
        qkv_bias=True,
        num_frames=16,
        tubelet_size=2,
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        # pooled with the checkpoint's fc_norm, as AdaTAD (no final norm)
        use_mean_pooling=True,
        temporal_adapter=dict(reduction=4, kernel_size=3)),
    feat_len=192,  # 192 detector steps (the ViT gives 384, resampled)
    neck=dict(in_channels=1024))

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames, mode='resize'),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 182)),
    dict(type='RandomCrop', size=crop_size),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
test_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames, mode='resize',
         test_mode=True),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, crop_size)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackTALInputs'),
]
# 1 GPU x 2 videos (the Re2TAL ActivityNet recipe's 8 would not fit)
train_dataloader = dict(batch_size=2,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# detector lr 1e-3; temporal adapters (the backbone's only trainable
# parameters) at 1e-3 * 0.1 = 1e-4
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=dict(
        backbone=dict(lr_mult=0.1, decay_mult=1.))))
auto_scale_lr = dict(base_batch_size=2)

# Reversible temporal adapters on THUMOS-14 at AdaTAD's largest setting:
# VideoMAE V2-g/14 (1B parameters) frozen, temporal adapters (AdaTAD, Liu et
# al. CVPR 2024) in the second half of the blocks (20-39, as AdaTAD's
# 1536x224 recipe), the block stack rewired to one reversible stage with
# piecewise recompute (memory='floor': SDPA head groups, token slices).
# 1536-frame windows cut into 16-frame clips, 224x224 crops. Detector and
# schedule: our THUMOS-14 recipe; temporal adapters at AdaTAD's lr 1e-4.
_base_ = ['./_base_/re2tal_thumos14_1024x224.py']

# a VideoMAE V2-g/14 checkpoint (Kinetics-710 fine-tuned; keys as
# mmaction2's VisionTransformer): a path you fill in, nothing is downloaded
load_from = None

num_frames = 1536
frame_stride = 2
crop_size = 224
video_fps = 30
window_duration = num_frames * frame_stride / video_fps

model = dict(
    rewire=dict(mode='reversible', memory='floor'),
    backbone=dict(
        type='ClipBatchedViT',
        img_size=224,
        patch_size=14,
        embed_dims=1408,
        depth=40,
        num_heads=16,
        mlp_ratio=48 / 11,
        qkv_bias=True,
        num_frames=16,
        tubelet_size=2,
        drop_path_rate=0.1,
        use_mean_pooling=False,
        temporal_adapter=dict(reduction=4, kernel_size=3),
        adapter_blocks=list(range(20, 40))),
    neck=dict(in_channels=1408))

train_pipeline = [
    dict(type='TALVideoInit'),
    dict(type='TALWindowSample', num_steps=num_frames,
         frame_stride=frame_stride),
    dict(type='TALVideoDecode'),
    dict(type='Resize', scale=(-1, 256)),
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

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))

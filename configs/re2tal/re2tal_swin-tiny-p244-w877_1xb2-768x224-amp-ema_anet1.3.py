# Re2TAL paper recipe: ActivityNet-1.3, Video Swin-T (Kinetics-400 pretrained)
# rewired to a reversible network; the recipe (data, detector, schedule,
# runtime) is in _base_/re2tal_anet1.3_768x224.py.
_base_ = ['./_base_/re2tal_anet1.3_768x224.py']

# Kinetics-400 Video Swin-T recognizer checkpoint (MMAction2 model zoo, e.g.
# swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_*.pth);
# its `backbone.*` weights are loaded (non-strict), `cls_head.*` ignored.
load_from = None

model = dict(
    backbone=dict(
        type='SwinTransformer3D',
        arch='tiny',
        pretrained=None,  # weights come from load_from (Kinetics-400)
        pretrained2d=False,
        patch_size=(2, 4, 4),
        window_size=(8, 7, 7),
        mlp_ratio=4.,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.1,
        patch_norm=True),
    feat_len=192,  # 192 detector steps (Swin gives 384, resampled)
    neck=dict(in_channels=768))

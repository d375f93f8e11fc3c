# Re2TAL recipe: ActivityNet-1.3, Video Swin-T rewired to a reversible network
# (OpenTAD's e2e_anet_re2tal_actionformer_swin_tiny.py: Re2Swin-T, average
# mAP 36.47 there); the recipe (data, detector, schedule, runtime) is in
# _base_/re2tal_anet1.3_768x224.py.
_base_ = ['./_base_/re2tal_anet1.3_768x224.py']

# The Re2TAL authors' K400-finetuned rewired Swin-T,
# invswin-tiny-p244-w877_kinetics400_pre_k400_ft_e30.pth, converted with
# tools/convert_opentad_checkpoint.py (a bare backbone: loaded into
# backbone.*). A path you fill in; nothing is downloaded.
load_from = None

model = dict(
    # memory preset 'floor': one step of this config at 32x112 peaks at
    # 265 MiB against 381 with 'balanced' (README memory table)
    rewire=dict(mode='reversible', memory='floor'),
    backbone=dict(
        type='SwinTransformer3D',
        arch='tiny',
        pretrained=None,  # weights come from load_from
        pretrained2d=False,
        patch_size=(2, 4, 4),
        window_size=(8, 7, 7),
        mlp_ratio=4.,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.2,
        patch_norm=True,
        out_after_downsample=False),
    # 768 frames -> 384 steps (patch 2 in time), resampled to feat_len 192
    neck=dict(in_channels=768))

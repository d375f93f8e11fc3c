# Re2TAL recipe: THUMOS-14, Video Swin-T rewired to a reversible network
# (OpenTAD's e2e_thumos_re2tal_actionformer_swin_tiny.py: Re2Swin-T, average
# mAP 66.89 there); the recipe (data, detector, schedule, runtime) is in
# _base_/re2tal_thumos14_1024x224.py.
_base_ = ['./_base_/re2tal_thumos14_1024x224.py']

# The Re2TAL authors' K400-finetuned rewired Swin-T,
# invswin-tiny-p244-w877_kinetics400_pre_k400_ft_e30.pth, converted:
#   python tools/convert_opentad_checkpoint.py \
#       invswin-tiny-p244-w877_kinetics400_pre_k400_ft_e30.pth \
#       work_dirs/invswin-tiny_k400.pth
# (a bare backbone: loaded into backbone.*). A path you fill in; nothing is
# downloaded. An OpenTAD THUMOS-14 checkpoint of this model converts the same
# way and runs with `mim test` (configs/re2tal/README.md).
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
    # 1024 frames -> 512 steps (patch 2 in time) = feat_len
    neck=dict(in_channels=768))

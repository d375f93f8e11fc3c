# Re2TAL paper recipe: ActivityNet-1.3, SlowFast-R101 8x8 (Kinetics-400
# pretrained) rewired to a reversible network; the recipe (data, detector,
# schedule, runtime) is in _base_/re2tal_anet1.3_768x224.py.
_base_ = ['./_base_/re2tal_anet1.3_768x224.py']

# Kinetics-400 SlowFast-R101 recognizer checkpoint (MMAction2 model zoo, e.g.
# slowfast_r101_8xb8-8x8x1-256e_kinetics400-rgb_*.pth);
# its `backbone.*` weights are loaded (non-strict), `cls_head.*` ignored.
load_from = None

model = dict(
    backbone=dict(
        type='ResNet3dSlowFast',
        pretrained=None,  # weights come from load_from (Kinetics-400)
        resample_rate=8,  # slow pathway: every 8th input frame
        speed_ratio=8,  # fast pathway: every input frame
        channel_ratio=8,
        slow_pathway=dict(
            type='resnet3d', depth=101, pretrained=None, lateral=True,
            conv1_kernel=(1, 7, 7), dilations=(1, 1, 1, 1),
            conv1_stride_t=1, pool1_stride_t=1, inflate=(0, 0, 1, 1),
            norm_eval=True),  # 2 videos per GPU: keep BN statistics frozen
        fast_pathway=dict(
            type='resnet3d', depth=101, pretrained=None, lateral=False,
            base_channels=8, conv1_kernel=(5, 7, 7), conv1_stride_t=1,
            pool1_stride_t=1, norm_eval=True)),
    # slow (2048 ch, T/8) and fast (256 ch, T) outputs are resampled to one
    # length and concatenated (2304 channels)
    feat_len=192,  # num_frames // 4
    neck=dict(in_channels=2304))

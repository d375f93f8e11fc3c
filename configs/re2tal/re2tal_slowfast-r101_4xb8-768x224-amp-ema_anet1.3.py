# Re2TAL recipe: ActivityNet-1.3, SlowFast-R101 4x4 rewired to a reversible
# network (OpenTAD's e2e_anet_re2tal_actionformer_slowfast101.py:
# Re2SlowFast-101, average mAP 37.55 there); the recipe (data, detector,
# schedule, runtime) is in _base_/re2tal_anet1.3_768x224.py.
_base_ = ['./_base_/re2tal_anet1.3_768x224.py']

# The Re2TAL authors' K400-finetuned rewired SlowFast-101,
# invslowfast101_k400_pre_k400_ft_e30.pth, converted:
#   python tools/convert_opentad_checkpoint.py \
#       invslowfast101_k400_pre_k400_ft_e30.pth \
#       work_dirs/invslowfast101_k400.pth
# A path you fill in; nothing is downloaded.
load_from = None

model = dict(
    # OpenTAD's reversible SlowFast computes the first block of each stage as
    # relu(F(x)) + downsample(x) (MMAction2: relu(F(x) + downsample(x))): its
    # checkpoints were trained with that form. Memory preset 'floor' (the
    # stem checkpointed, first blocks and branches in slices of time;
    # configs/re2tal/README.md's memory table)
    rewire=dict(mode='reversible', memory='floor', first_block='opentad'),
    backbone=dict(
        type='ResNet3dSlowFast',
        pretrained=None,  # weights come from load_from
        resample_rate=4,  # slow pathway: every 4th input frame
        speed_ratio=4,  # fast pathway: every input frame
        channel_ratio=8,
        slow_pathway=dict(
            type='resnet3d', depth=101, pretrained=None, lateral=True,
            fusion_kernel=7, conv1_kernel=(1, 7, 7), dilations=(1, 1, 1, 1),
            conv1_stride_t=1, pool1_stride_t=1, inflate=(0, 0, 1, 1),
            norm_eval=True),
        fast_pathway=dict(
            type='resnet3d', depth=101, pretrained=None, lateral=False,
            base_channels=8, conv1_kernel=(5, 7, 7), conv1_stride_t=1,
            pool1_stride_t=1, norm_eval=True)),
    # slow (2048 channels, 192 steps) and fast (256 channels, 768 steps)
    # outputs, each resampled to feat_len = 192, concatenated: 2304 channels
    neck=dict(in_channels=2304))

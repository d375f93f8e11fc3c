"""OpenTAD's Re2TAL detector config, written out as data (its
``configs/_base_/models/actionformer.py`` with the Re2TAL THUMOS overrides of
``configs/re2tal/e2e_thumos_re2tal_actionformer_*.py``, HEAD 3dd7b03), for
the tests that translate it with :mod:`re2tal_mm.apis.opentad`."""
from mmengine.config import Config

#: OpenTAD's _base_/models/actionformer.py with the Re2TAL THUMOS overrides
ACTIONFORMER = dict(
    type='ActionFormer',
    projection=dict(
        type='Conv1DTransformerProj', in_channels=768, out_channels=512,
        arch=(2, 2, 5), conv_cfg=dict(kernel_size=3, proj_pdrop=0.0),
        norm_cfg=dict(type='LN'), attn_cfg=dict(n_head=4, n_mha_win_size=-1),
        path_pdrop=0.1, use_abs_pe=False, max_seq_len=512),
    neck=dict(type='FPNIdentity', in_channels=512, out_channels=512,
              num_levels=6),
    rpn_head=dict(
        type='ActionFormerHead', num_classes=20, in_channels=512,
        feat_channels=512, num_convs=2, cls_prior_prob=0.01,
        prior_generator=dict(
            type='PointGenerator', strides=[1, 2, 4, 8, 16, 32],
            regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                              (64, 10000)]),
        loss_normalizer=100, loss_normalizer_momentum=0.9,
        center_sample='radius', center_sample_radius=1.5,
        label_smoothing=0.0,
        loss=dict(cls_loss=dict(type='FocalLoss'),
                  reg_loss=dict(type='DIOULoss'))))


def actionformer_config(in_channels: int, width: int = 512,
                        max_seq_len: int = 512) -> dict:
    """:data:`ACTIONFORMER` with another input, width and length."""
    cfg = Config(ACTIONFORMER).to_dict()
    cfg['projection'].update(in_channels=in_channels, out_channels=width,
                             max_seq_len=max_seq_len)
    cfg['neck'].update(in_channels=width, out_channels=width)
    cfg['rpn_head'].update(in_channels=width, feat_channels=width)
    return cfg

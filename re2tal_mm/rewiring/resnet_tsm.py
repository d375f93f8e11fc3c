"""Adapter for mmaction2's ``ResNetTSM`` (TSM; ``ResNetTIN`` too).

With the default ``shift_place='blockres'`` the temporal shift wraps
``conv1.conv`` of the blocks, i.e. it lives inside the residual branch, so the
blocks after the first of each stage are rewired exactly as in
:mod:`.resnet2d` (ReLU moved onto the branch). The shift folds the batch into
``(N, num_segments)`` clips, so inputs stay ``(N * num_segments, C, H, W)``.
With ``temporal_pool=True`` ``layer2`` wraps its blocks in a ``TemporalPool``;
the chain is then its inner ``layer2.net``. Stages whose later blocks are
shifted as a whole (``shift_place='block'``: the shift also acts on the
shortcut, no identity residual) or wrapped by a non-local block stay plain.
"""
from mmaction.models.backbones.resnet_tsm import ResNetTSM
from .base import register_adapter
from .resnet2d import ResNet2dAdapter


@register_adapter
class ResNetTSMAdapter(ResNet2dAdapter):
    """Describes where ``ResNetTSM``'s residual functions are."""

    backbone_types = (ResNetTSM, )

    @staticmethod
    def res_layer_names(backbone: ResNetTSM):
        """Stage names, through ``TemporalPool`` wrappers."""
        return [f'{name}.net' if hasattr(getattr(backbone, name), 'net') and
                hasattr(getattr(backbone, name), 'max_pool3d') else name
                for name in backbone.res_layers]

"""Adapter for mmaction2's ``ResNet3d`` family (``ResNet3dPathway`` too, so
both pathways of ``ResNet3dSlowFast`` and SlowOnly/I3D-style backbones).

In every stage the blocks after the first (which holds the projection
shortcut) form the reversible chain with ``F_k`` the block's residual branch.
``Bottleneck3d`` applies its ReLU after the addition; the rewired block applies
it to the branch output before the addition, because the addition must stay
pure to be invertible. This changes the function slightly (as in the paper, a
short fine-tune re-adapts it) while every parameter is reused unchanged.
Lateral connections stay non-reversible. Stages whose later blocks hold a
non-local block or a downsample are left as they are. Options: see
:class:`~.common.ResLayerAdapter` (pieces are slices of time).
"""
from mmaction.models.backbones.resnet3d import (BasicBlock3d, Bottleneck3d,
                                                ResNet3d)
from .base import register_adapter
from .resnet import ResLayerAdapter, resnet_branch, resnet_branch_layers


def is_chainable(block) -> bool:
    """Whether a block's residual is a pure identity addition."""
    return isinstance(block, (BasicBlock3d, Bottleneck3d)) and \
        block.downsample is None and not getattr(block, 'non_local', False)


@register_adapter
class ResNet3dAdapter(ResLayerAdapter):
    """Describes where ``ResNet3d``'s residual functions are."""

    backbone_types = (ResNet3d, )
    residual_branch = staticmethod(resnet_branch)
    branch_layers = staticmethod(resnet_branch_layers)
    is_chainable = staticmethod(is_chainable)

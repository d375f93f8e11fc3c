"""Adapter for mmaction2's 2D ``ResNet`` (TSN and other 2D recognizers; input
``(N * T, C, H, W)``). Subclasses such as ``C2D`` use it as well;
``ResNetTSM`` has its own adapter (:mod:`.resnet_tsm`).

In every stage the blocks after the first (which holds the projection
shortcut) form the reversible chain with ``F_k`` the block's residual branch.
``BasicBlock`` / ``Bottleneck`` apply their ReLU after the addition; the
rewired block applies it to the branch output before the addition (the
addition must stay pure to be invertible), as for ``ResNet3d``. Blocks of
another type (e.g. wrapped by ``TANet``) leave their stage plain. A block's
own ``with_cp`` is not used inside the chain. Options: see
:class:`~.common.ResLayerAdapter` (pieces are slices of height).
"""
from mmaction.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from .base import register_adapter
from .resnet import ResLayerAdapter, resnet_branch, resnet_branch_layers


def is_chainable(block) -> bool:
    """Whether a block's residual is a pure identity addition."""
    return isinstance(block, (BasicBlock, Bottleneck)) and \
        block.downsample is None


@register_adapter
class ResNet2dAdapter(ResLayerAdapter):
    """Describes where a 2D ``ResNet``'s residual functions are."""

    backbone_types = (ResNet, )
    residual_branch = staticmethod(resnet_branch)
    branch_layers = staticmethod(resnet_branch_layers)
    is_chainable = staticmethod(is_chainable)

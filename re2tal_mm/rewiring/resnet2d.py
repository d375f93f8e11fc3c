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
from .common import ResLayerAdapter


def residual_branch(block, x):
    """``relu(conv3(conv2(conv1(x))))`` (``conv2`` last for basic blocks).

    Whatever wraps ``conv1.conv`` (TSM's temporal shift, TIN's interlace)
    runs here too: it lives inside the branch.
    """
    out = block.conv2(block.conv1(x))
    if isinstance(block, Bottleneck):
        out = block.conv3(out)
    return block.relu(out)


def branch_layers(block):
    """The layers :func:`residual_branch` runs."""
    convs = [block.conv1, block.conv2]
    if isinstance(block, Bottleneck):
        convs.append(block.conv3)
    return convs + [block.relu]


def is_chainable(block) -> bool:
    """Whether a block's residual is a pure identity addition."""
    return isinstance(block, (BasicBlock, Bottleneck)) and \
        block.downsample is None


@register_adapter
class ResNet2dAdapter(ResLayerAdapter):
    """Describes where a 2D ``ResNet``'s residual functions are."""

    backbone_types = (ResNet, )
    residual_branch = staticmethod(residual_branch)
    branch_layers = staticmethod(branch_layers)
    is_chainable = staticmethod(is_chainable)

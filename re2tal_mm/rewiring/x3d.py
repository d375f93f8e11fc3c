"""Adapter for mmaction2's ``X3D``.

In every stage the blocks after the first (which holds the projection
shortcut and the spatial stride) form the reversible chain; ``F_k`` is the
whole residual branch of ``BlockX3D``: conv1 (BN, ReLU), the channel-wise
conv2 (BN), squeeze-excitation where the block has it, Swish, conv3 (BN).
``BlockX3D`` applies its ReLU after the addition; the rewired block applies it
to the branch output before the addition (the addition must stay pure to be
invertible), the same function change as for ``ResNet3d``. The stem and
``conv5`` stay plain. A block's own ``with_cp`` is not used inside the chain
(it needs no stored activations). Options: see
:class:`~.resnet.ResLayerAdapter`; pieces are slices of time for the blocks
without squeeze-excitation (its global pooling is not local) while BatchNorm
is frozen, else each layer's slices of output channels
(:mod:`.channel_pieces`).
"""
from mmaction.models.backbones.x3d import X3D, BlockX3D
from .base import register_adapter
from .resnet import ResLayerAdapter


def residual_branch(block: BlockX3D, x):
    """``relu(conv3(swish([se](conv2(conv1(x))))))`` of one X3D block."""
    out = block.conv2(block.conv1(x))
    if block.se_ratio is not None:
        out = block.se_module(out)
    return block.relu(block.conv3(block.swish(out)))


def branch_layers(block: BlockX3D):
    """The layers :func:`residual_branch` runs, in order (the branch is
    their composition)."""
    se = [block.se_module] if block.se_ratio is not None else []
    return [block.conv1, block.conv2, *se, block.swish, block.conv3,
            block.relu]


def is_chainable(block) -> bool:
    """Whether a block's residual is a pure identity addition."""
    return isinstance(block, BlockX3D) and block.downsample is None


@register_adapter
class X3DAdapter(ResLayerAdapter):
    """Describes where ``X3D``'s residual functions are."""

    backbone_types = (X3D, )
    stem = ('conv1_s', 'conv1_t')
    residual_branch = staticmethod(residual_branch)
    branch_layers = staticmethod(branch_layers)
    is_chainable = staticmethod(is_chainable)

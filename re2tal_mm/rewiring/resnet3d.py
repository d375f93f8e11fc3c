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
:class:`~.resnet.ResLayerAdapter` (pieces are slices of time).

``ResNet3dSlowFast`` itself has no chain (:class:`SlowFastAdapter`): with
``checkpoint_stem`` it only moves each pathway's resampling of the clip into
that pathway's checkpointed stem.
"""
from functools import partial

import torch
from torch import Tensor
from torch.nn import functional as F

from mmaction.models.backbones.resnet3d import (BasicBlock3d, Bottleneck3d,
                                                ResNet3d)
from mmaction.models.backbones.resnet3d_slowfast import ResNet3dSlowFast
from .base import Adapter, patch_forwards, register_adapter
from .resnet import (ResLayerAdapter, resnet_branch, resnet_branch_layers,
                     stem_forward)


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

    @classmethod
    def stem_layers(cls, backbone: ResNet3d):
        """``conv1``, and ``maxpool`` when ``with_pool1`` (``ResNet3d``'s
        forward runs it only then; ``ResNet3dSlowFast``'s always, so without
        ``with_pool1`` it stays outside the checkpointed stem)."""
        layers = super().stem_layers(backbone)
        return layers if backbone.with_pool1 else layers[:1]


def resample(scale: float, x: Tensor) -> Tensor:
    """A pathway's frames of the clip (``ResNet3dSlowFast``'s nearest
    resampling in time)."""
    return F.interpolate(x, mode='nearest', scale_factor=(scale, 1.0, 1.0))


def slowfast_forward(backbone: ResNet3dSlowFast, x: Tensor) -> tuple:
    """``ResNet3dSlowFast.forward`` with each pathway's resampling of ``x``
    inside its checkpointed stem, so the stems keep ``x`` itself, not the
    pathways' copies of it; the rest is the upstream loop (pinned to it in
    float64 by ``tests/test_checkpoint_pieces.py``)."""
    slow, fast = backbone.slow_path, backbone.fast_path
    x_slow = stem_forward([slow.conv1, slow.maxpool], x, partial(
        resample, 1.0 / backbone.resample_rate))
    x_fast = stem_forward([fast.conv1, fast.maxpool], x, partial(
        resample, 1.0 / (backbone.resample_rate // backbone.speed_ratio)))
    if slow.lateral:
        x_slow = torch.cat((x_slow, slow.conv1_lateral(x_fast)), dim=1)
    for i, name in enumerate(slow.res_layers):
        x_slow = getattr(slow, name)(x_slow)
        x_fast = getattr(fast, name)(x_fast)
        if i != len(slow.res_layers) - 1 and slow.lateral:
            lateral = getattr(slow, slow.lateral_connections[i])
            x_slow = torch.cat((x_slow, lateral(x_fast)), dim=1)
    return x_slow, x_fast


@register_adapter
class SlowFastAdapter(Adapter):
    """``ResNet3dSlowFast`` as the container of its two pathways (each
    rewired by :class:`ResNet3dAdapter`): no chain of its own. Option
    ``checkpoint_stem`` (default False; ``'floor'``): in ``'reversible'``
    mode its forward resamples the clip inside each pathway's checkpointed
    stem (:func:`slowfast_forward`)."""

    backbone_types = (ResNet3dSlowFast, )
    options = dict(checkpoint_stem=False)
    presets = dict(floor=dict(checkpoint_stem=True))

    @classmethod
    def stages(cls, backbone, **options):
        """None: the chains are in the pathways."""
        return iter(())

    @classmethod
    def make_forward(cls, spec, stage):
        raise NotImplementedError('ResNet3dSlowFast has no chain of its own')

    @classmethod
    def prepare(cls, backbone: ResNet3dSlowFast, mode: str, **options):
        """``checkpoint_stem``: :func:`slowfast_forward`."""
        if not (options['checkpoint_stem'] and mode == 'reversible'):
            return None
        return patch_forwards([(backbone,
                                partial(slowfast_forward, backbone))])

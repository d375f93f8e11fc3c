"""Adapter for mmaction2's ``ResNet3d`` family (``ResNet3dPathway`` too, so
both pathways of ``ResNet3dSlowFast`` and SlowOnly/I3D-style backbones).

In every stage the blocks after the first (which holds the projection
shortcut) form the reversible chain with ``F_k`` the block's residual branch.
``Bottleneck3d`` applies its ReLU after the addition; the rewired block applies
it to the branch output before the addition, because the addition must stay
pure to be invertible. This changes the function slightly (as in the paper, a
short fine-tune re-adapts it) while every parameter is reused unchanged.
Lateral connections stay non-reversible. Stages whose later blocks hold a
non-local block or a downsample are left as they are.

Option ``checkpoint_first`` (default True): in ``'reversible'`` mode the first
(non-reversible) block of each rewired stage runs under activation
checkpointing, with BatchNorm running statistics updated once.
"""
from contextlib import contextmanager, nullcontext
from functools import partial

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from mmaction.models.backbones.resnet3d import (BasicBlock3d, Bottleneck3d,
                                                ResNet3d)

from ..reversible import ResidualFunction, RewiredStage
from .base import register_adapter


def residual_branch(block, x):
    """``relu(conv3(conv2(conv1(x))))`` (``conv2`` last for basic blocks)."""
    out = block.conv2(block.conv1(x))
    if isinstance(block, Bottleneck3d):
        out = block.conv3(out)
    return block.relu(out)


def is_chainable(block) -> bool:
    """Whether a block's residual is a pure identity addition."""
    return isinstance(block, (BasicBlock3d, Bottleneck3d)) and \
        block.downsample is None and not getattr(block, 'non_local', False)


@contextmanager
def running_stats_untouched(module):
    """BatchNorm with momentum 0 (running stats kept) inside the body."""
    saved = [(m, m.momentum, m.num_batches_tracked.clone())
             for m in module.modules()
             if isinstance(m, _BatchNorm) and m.training and
             m.track_running_stats and m.momentum is not None]
    for m, _, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def checkpointed(block, x):
    """``block(x)`` with activation checkpointing; stats updated once."""
    return checkpoint(
        block, x, use_reentrant=False,
        context_fn=lambda: (nullcontext(), running_stats_untouched(block)))


def rewired_res_layer_forward(res_layer, stage: RewiredStage,
                              checkpoint_first, x):
    """A res-layer ``Sequential`` forward: first block, then the chain."""
    blocks = list(res_layer)
    if checkpoint_first and stage.mode == 'reversible' and \
            torch.is_grad_enabled() and x.requires_grad:
        x = checkpointed(blocks[0], x)
    else:
        x = blocks[0](x)
    functions = [
        ResidualFunction(partial(residual_branch, blk), [blk])
        for blk in blocks[1:]
    ]
    return stage(functions, x)


@register_adapter
class ResNet3dAdapter:
    """Describes where ``ResNet3d``'s residual functions are."""

    backbone_types = (ResNet3d, )
    options = dict(checkpoint_first=True)
    functions_per_block = 1

    @staticmethod
    def stages(backbone: ResNet3d):
        """Yield ``(name, stage_module, num_functions, total_blocks)``."""
        for name in backbone.res_layers:
            res_layer = getattr(backbone, name)
            blocks = list(res_layer)
            if len(blocks) < 2 or not all(map(is_chainable, blocks[1:])):
                yield name, None, 0, len(blocks)
                continue
            yield name, res_layer, len(blocks) - 1, len(blocks)

    @staticmethod
    def make_forward(stage_module, stage: RewiredStage,
                     checkpoint_first: bool = True):
        """The replacement forward bound to ``stage_module``."""
        return partial(rewired_res_layer_forward, stage_module, stage,
                       checkpoint_first)

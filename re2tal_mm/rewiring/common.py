"""Pieces shared by the adapters of convolutional and transformer backbones.

* :func:`res_layer_stages` / :func:`rewired_res_layer_forward`: a stage that
  is an ``nn.Sequential`` of residual blocks (ResNet3d, ResNet, X3D): the
  first block (projection shortcut) stays plain, optionally checkpointed
  (:func:`checkpointed`), the blocks after it form the chain.
* :class:`ResLayerAdapter`: base of adapters made of such stages; a
  subclass names its ``backbone_types``, ``residual_branch`` and
  ``is_chainable``.
* :func:`transformer_functions`: the two residual functions (attention half,
  MLP half) of pre-norm transformer blocks.
"""
from contextlib import nullcontext
from functools import partial
from typing import Callable, Iterator, List, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ..reversible import ResidualFunction, RewiredStage


class RunningStatsUntouched:
    """BatchNorm with momentum 0 (running stats kept) inside the body.

    A class, not a generator: ``torch.utils.checkpoint`` enters the recompute
    context of one forward once per backward, twice under
    ``retain_graph=True``.

    Args:
        module (nn.Module): Its BatchNorm layers in train mode are affected.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self.saved = []

    def __enter__(self):
        self.saved = [(m, m.momentum, m.num_batches_tracked.clone())
                      for m in self.module.modules()
                      if isinstance(m, _BatchNorm) and m.training and
                      m.track_running_stats and m.momentum is not None]
        for m, _, _ in self.saved:
            m.momentum = 0.0
        return self

    def __exit__(self, *exc):
        for m, momentum, count in self.saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)
        self.saved = []


def checkpointed(block, x):
    """``block(x)`` with activation checkpointing; stats updated once."""
    return checkpoint(
        block, x, use_reentrant=False,
        context_fn=lambda: (nullcontext(), RunningStatsUntouched(block)))


def res_layer_stages(backbone: nn.Module, layers: Sequence[str],
                     is_chainable: Callable[[nn.Module], bool]) -> Iterator:
    """``(name, res_layer or None, num_functions, blocks)`` per stage.

    A stage is rewired when it has a second block and every block after the
    first is chainable (a pure identity residual); otherwise it stays plain.

    Args:
        backbone (nn.Module): The backbone owning the stages.
        layers (Sequence[str]): Dotted names of the ``nn.Sequential`` stages.
        is_chainable (Callable): Whether a block has an identity shortcut.
    """
    for name in layers:
        res_layer = backbone.get_submodule(name)
        blocks = list(res_layer)
        if len(blocks) < 2 or not all(map(is_chainable, blocks[1:])):
            yield name, None, 0, len(blocks)
        else:
            yield name, res_layer, len(blocks) - 1, len(blocks)


def plain_function(branch: Callable, block: nn.Module) -> ResidualFunction:
    """``branch(block, x)`` as a residual function computed whole."""
    return ResidualFunction(partial(branch, block), [block])


def rewired_res_layer_forward(res_layer: nn.Sequential, stage: RewiredStage,
                              make_function: Callable, checkpoint_first: bool,
                              x: Tensor) -> Tensor:
    """First block of ``res_layer`` as it is, then the chain of the others.

    Args:
        res_layer (nn.Sequential): The stage.
        stage (RewiredStage): Runs the chain.
        make_function (Callable): ``make_function(block)``, the block's
            :class:`ResidualFunction`.
        checkpoint_first (bool): Checkpoint the first block in
            ``'reversible'`` mode (BatchNorm statistics updated once).
        x (Tensor): The stage input.
    """
    blocks = list(res_layer)
    if checkpoint_first and stage.mode == 'reversible' and \
            torch.is_grad_enabled() and x.requires_grad:
        x = checkpointed(blocks[0], x)
    else:
        x = blocks[0](x)
    return stage([make_function(blk) for blk in blocks[1:]], x)


def checkpoints_first(res_layer: nn.Sequential) -> bool:
    """Whether a rewired stage checkpoints its first block."""
    forward = res_layer.__dict__.get('forward')
    return isinstance(forward, partial) and \
        forward.func is rewired_res_layer_forward and bool(forward.args[3])


class ResLayerAdapter:
    """Base of adapters for backbones with ``nn.Sequential`` stages.

    Subclasses set ``backbone_types`` and two static methods:
    ``residual_branch(block, x)`` and ``is_chainable(block)``; stages are
    ``backbone.res_layers`` unless ``res_layer_names`` says otherwise.
    Option ``checkpoint_first`` (default True): see
    :func:`rewired_res_layer_forward`.
    """

    options = dict(checkpoint_first=True)
    functions_per_block = 1

    @staticmethod
    def res_layer_names(backbone: nn.Module) -> Sequence[str]:
        """Dotted names of the ``nn.Sequential`` stages."""
        return backbone.res_layers

    @classmethod
    def stages(cls, backbone: nn.Module) -> Iterator:
        """Yield ``(name, stage_module, num_functions, total_blocks)``."""
        yield from res_layer_stages(backbone, cls.res_layer_names(backbone),
                                    cls.is_chainable)

    @classmethod
    def make_forward(cls, stage_module: nn.Sequential, stage: RewiredStage,
                     checkpoint_first: bool = True):
        """The replacement forward bound to ``stage_module``."""
        return partial(rewired_res_layer_forward, stage_module, stage,
                       partial(plain_function, cls.residual_branch),
                       checkpoint_first)


def transformer_functions(blocks: Sequence[nn.Module], attention_half,
                          mlp_half) -> List[ResidualFunction]:
    """Two functions per pre-norm block: ``attention_half(block, x)`` and
    ``mlp_half(block, x)`` (each must apply the block's drop-path itself, so
    its random mask is replayed by the recompute). The whole block is
    listed as each function's module, so block-level parameters such as
    layer-scale gammas receive their gradients."""
    functions = []
    for blk in blocks:
        functions.append(ResidualFunction(partial(attention_half, blk),
                                          [blk]))
        functions.append(ResidualFunction(partial(mlp_half, blk), [blk]))
    return functions

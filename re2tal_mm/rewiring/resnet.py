"""Adapters of backbones whose stages are ``nn.Sequential`` s of residual
blocks (ResNet3d, ResNet, TSM, X3D): :class:`ResLayerAdapter`.

The first block (projection shortcut) stays outside the chain, optionally
checkpointed (:func:`checkpointed`, BatchNorm statistics updated once), in
MMAction2's form or OpenTAD's (``first_block``, :data:`FIRST_BLOCK_FORMS`);
the blocks after it form the chain, their branch (:func:`resnet_branch`)
split by :mod:`.pieces` when asked.
"""
from contextlib import nullcontext
from functools import partial
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ..reversible import ResidualFunction, RewiredStage
from .base import FLOOR_PIECES, Adapter, StageSpec
from .pieces import conv_halo, split_asked, split_branch

# forms of a rewired stage's first block (``first_block``): MMAction2's
# block forward (ReLU after the sum), or OpenTAD's (ReLU on the branch)
FIRST_BLOCK_FORMS = ('mmaction', 'opentad')


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


def checkpointed(block: nn.Module, *args, fn: Optional[Callable] = None):
    """``block(*args)`` (or ``fn(*args)``, a function of ``block``) with
    activation checkpointing; BatchNorm statistics updated once."""
    return checkpoint(
        fn or block, *args, use_reentrant=False,
        context_fn=lambda: (nullcontext(), RunningStatsUntouched(block)))


def resnet_branch(block: nn.Module, x: Tensor) -> Tensor:
    """``relu(conv3(conv2(conv1(x))))`` of a ResNet block (``conv2`` last
    for basic blocks), 2D or 3D: the branch with the ReLU moved onto it.

    Whatever wraps ``conv1.conv`` (TSM's temporal shift, TIN's interlace)
    runs here too: it lives inside the branch.
    """
    out = block.conv2(block.conv1(x))
    if hasattr(block, 'conv3'):
        out = block.conv3(out)
    return block.relu(out)


def resnet_branch_layers(block: nn.Module) -> List[nn.Module]:
    """The layers :func:`resnet_branch` runs."""
    convs = [block.conv1, block.conv2]
    if hasattr(block, 'conv3'):
        convs.append(block.conv3)
    return convs + [block.relu]


class ResLayerAdapter(Adapter):
    """Base of adapters for backbones with ``nn.Sequential`` stages.

    Subclasses set ``backbone_types`` and three static methods:
    ``residual_branch(block, x)``, ``branch_layers(block)`` (the layers the
    branch runs, for :func:`conv_halo`) and ``is_chainable(block)``; stages
    are ``backbone.res_layers`` unless ``res_layer_names`` says otherwise.

    Options:

    * ``checkpoint_first`` (bool, default True): in ``'reversible'`` mode
      the first block of each rewired stage runs under activation
      checkpointing, BatchNorm statistics updated once;
    * ``pieces`` (int, default 1) / ``piece_mib`` (float, optional): the
      reversible engine computes a branch in at least ``pieces`` slices of
      dimension 2, each input at most ``piece_mib`` MiB, when the branch is
      local (BatchNorm in eval mode, ``norm_eval=True``); else whole;
    * ``first_block`` (``'mmaction'`` or ``'opentad'``, default
      ``'mmaction'``): the function of each rewired stage's first block.
      ``'mmaction'``: the block's own forward, ``relu(F(x) +
      shortcut(x))``. ``'opentad'``: ``relu(F(x)) + shortcut(x)``, the
      activation on the branch as in the chained blocks (what OpenTAD's
      Re2TAL SlowFast computes, so what its checkpoints were trained with).
      The only option here that changes the function computed.
    """

    options = dict(checkpoint_first=True, pieces=1, piece_mib=None,
                   first_block='mmaction')
    choices = dict(first_block=FIRST_BLOCK_FORMS)
    presets = dict(fast=dict(checkpoint_first=False), floor=FLOOR_PIECES)
    stem: Tuple[str, ...] = ('conv1', )

    @staticmethod
    def res_layer_names(backbone: nn.Module) -> Sequence[str]:
        """Dotted names of the ``nn.Sequential`` stages."""
        return backbone.res_layers

    @classmethod
    def stages(cls, backbone: nn.Module, **options) -> Iterator[StageSpec]:
        """One stage per ``nn.Sequential``: rewired when it has a second
        block and every block after the first is chainable."""
        for name in cls.res_layer_names(backbone):
            res_layer = backbone.get_submodule(name)
            blocks = list(res_layer)
            if len(blocks) < 2 or not all(map(cls.is_chainable, blocks[1:])):
                if options.get('first_block', 'mmaction') != 'mmaction':
                    raise ValueError(f'first_block: stage {name!r} is not '
                                     'rewired (unchainable), its first block '
                                     'would keep its own form')
                yield StageSpec(name, None, 0, len(blocks))
            else:
                yield StageSpec(name, res_layer, len(blocks) - 1,
                                len(blocks), bounds=(1, len(blocks)))

    @classmethod
    def function(cls, block: nn.Module, options: dict) -> ResidualFunction:
        """The residual function of ``block``, split when asked and the
        branch is local."""
        branch = partial(cls.residual_branch, block)
        split = None
        if split_asked(options):
            halo = conv_halo(block, cls.branch_layers(block))
            if halo is not None:
                split = partial(split_branch, branch, halo, options)
        return ResidualFunction(branch, [block], split)

    @classmethod
    def make_forward(cls, spec: StageSpec, stage: RewiredStage) -> Callable:
        """The stage's forward: its first block, then the chain."""
        return partial(res_layer_forward, cls, spec.module, stage)

    @classmethod
    def non_reversible(cls, backbone: nn.Module,
                       stages: Sequence[RewiredStage]) -> Iterator:
        """The stem, plain stages, and the first block of rewired ones."""
        for name in cls.stem:
            if hasattr(backbone, name):
                yield name, getattr(backbone, name), 'kept'
        for name in cls.res_layer_names(backbone):
            stage = next((s for s in stages if s.name == name or
                          s.name.endswith('.' + name)), None)
            if stage is None:
                yield name, backbone.get_submodule(name), 'kept'
            else:
                first = 'checkpoint' if stage.mode == 'reversible' and \
                    stage.options['checkpoint_first'] else 'kept'
                yield f'{name}.0', backbone.get_submodule(name)[0], first


def branch_then_shortcut(branch: Callable, block: nn.Module,
                         x: Tensor) -> Tensor:
    """``first_block='opentad'``: ``branch(block, x) + downsample(x)`` (or
    ``+ x``), ``branch`` the adapter's ``residual_branch`` (its ReLU before
    the sum, as in the chained blocks), then the block's non-local module
    if any. The block's own ``with_cp`` is not used."""
    shortcut = x if block.downsample is None else block.downsample(x)
    out = branch(block, x) + shortcut
    if getattr(block, 'non_local', False):
        out = block.non_local_block(out)
    return out


def res_layer_forward(adapter: type, res_layer: nn.Sequential,
                      stage: RewiredStage, x: Tensor) -> Tensor:
    """``nn.Sequential.forward`` of a rewired stage: the first block in the
    form ``first_block`` says (checkpointed when asked), then the chain of
    the others."""
    blocks = list(res_layer)
    first = None if stage.options['first_block'] == 'mmaction' else \
        partial(branch_then_shortcut, adapter.residual_branch, blocks[0])
    if stage.options['checkpoint_first'] and stage.mode == 'reversible' and \
            torch.is_grad_enabled() and x.requires_grad:
        x = checkpointed(blocks[0], x, fn=first)
    else:
        x = (first or blocks[0])(x)
    start, stop = stage.bounds
    return stage([adapter.function(b, stage.options)
                  for b in blocks[start:stop]], x)

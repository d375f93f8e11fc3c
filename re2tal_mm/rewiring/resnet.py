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

from ..reversible import (Piece, ResidualFunction, RewiredStage,
                          checkpoint_pieces)
from .base import Adapter, StageSpec, patch_forwards
from .channel_pieces import layerwise_branch
from .pieces import (conv_halo, halo_pieces, layer_radii, layers_piece,
                     split_asked, split_branch, split_layers)

# forms of a rewired stage's first block (``first_block``): MMAction2's
# block forward (ReLU after the sum), or OpenTAD's (ReLU on the branch)
FIRST_BLOCK_FORMS = ('mmaction', 'opentad')


class RunningStatsUntouched:
    """BatchNorm with momentum 0 (running stats kept) inside the body.

    A class, not a generator: ``torch.utils.checkpoint`` enters the recompute
    context of one forward once per backward, twice under
    ``retain_graph=True``.

    Args:
        *modules (nn.Module): Their BatchNorm layers in train mode are
            affected.
    """

    def __init__(self, *modules: nn.Module):
        self.modules = modules
        self.saved = []

    def __enter__(self):
        self.saved = [(m, m.momentum, m.num_batches_tracked.clone())
                      for module in self.modules for m in module.modules()
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


def checkpointed(block: nn.Module, *args, fn: Optional[Callable] = None,
                 modules: Sequence[nn.Module] = ()):
    """``block(*args)`` (or ``fn(*args)``, a function of ``block`` and
    ``modules``) with activation checkpointing; BatchNorm statistics updated
    once."""
    return checkpoint(
        fn or block, *args, use_reentrant=False,
        context_fn=lambda: (nullcontext(),
                            RunningStatsUntouched(block, *modules)))


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
    """The layers :func:`resnet_branch` runs, in order (the branch is their
    composition: pieces run them one by one, :func:`~.pieces.split_layers`)."""
    convs = [block.conv1, block.conv2]
    if hasattr(block, 'conv3'):
        convs.append(block.conv3)
    return convs + [block.relu]


class ResLayerAdapter(Adapter):
    """Base of adapters for backbones with ``nn.Sequential`` stages.

    Subclasses set ``backbone_types`` and three static methods:
    ``residual_branch(block, x)``, ``branch_layers(block)`` (the layers the
    branch runs, in order: ``residual_branch`` is their composition, which
    pieces compute layer by layer) and ``is_chainable(block)``; stages
    are ``backbone.res_layers`` unless ``res_layer_names`` says otherwise.

    Options:

    * ``checkpoint_first`` (bool, default True): in ``'reversible'`` mode
      the first block of each rewired stage runs under activation
      checkpointing, BatchNorm statistics updated once; in pieces (as
      below) when the block is local;
    * ``checkpoint_stem`` (bool, default False): in ``'reversible'`` mode
      the stem (the layers before the first stage, e.g. ``conv1`` and
      ``maxpool``) runs as one checkpointed function: only its input is
      kept (``'floor'``);
    * ``pieces`` (int, default 1) / ``piece_mib`` (float, optional): the
      reversible engine computes a branch, and recomputes a checkpointed
      first block, in at least ``pieces`` slices of dimension 2, each input
      at most ``piece_mib`` MiB, when the layer is local (BatchNorm in eval
      mode, ``norm_eval=True``; no stride along dimension 2); else (batch
      statistics) recomputes it layer by layer, each layer in slices of its
      output channels of that size (:mod:`.channel_pieces`);
    * ``first_piece_mib`` (float, optional): the bound of ``piece_mib`` for
      the first blocks instead (their backward is where a step peaks; a
      branch's slices cost the halo of its kernels again each);
    * ``first_block`` (``'mmaction'`` or ``'opentad'``, default
      ``'mmaction'``): the function of each rewired stage's first block.
      ``'mmaction'``: the block's own forward, ``relu(F(x) +
      shortcut(x))``. ``'opentad'``: ``relu(F(x)) + shortcut(x)``, the
      activation on the branch as in the chained blocks (what OpenTAD's
      Re2TAL SlowFast computes, so what its checkpoints were trained with).
      The only option here that changes the function computed.
    """

    options = dict(checkpoint_first=True, checkpoint_stem=False, pieces=1,
                   piece_mib=None, first_piece_mib=None,
                   first_block='mmaction')
    choices = dict(first_block=FIRST_BLOCK_FORMS)
    # 'floor': the stem checkpointed, first blocks in slices of 2 MiB and
    # branches of 4 MiB (not FLOOR_PIECES: a slice recomputes the time halo
    # of the 3x1x1 kernels; the peak is a first block's backward).
    # SlowFast-R50 32f: 396 MiB, 1.5x plain time; branches of 2 MiB too:
    # 396 MiB, 1.6x; whole branches: 399 MiB, 1.4x. BatchNorm training
    # (channel slices): X3D-M 16f 163 MiB, TSM-R50 546; docs/backbones.md
    presets = dict(fast=dict(checkpoint_first=False),
                   floor=dict(checkpoint_stem=True, piece_mib=4,
                              first_piece_mib=2))
    # the layers the backbone's forward runs before the first stage, in
    # order (those it has; see :meth:`stem_layers`)
    stem: Tuple[str, ...] = ('conv1', 'maxpool')

    @classmethod
    def stem_layers(cls, backbone: nn.Module) -> List[Tuple[str, nn.Module]]:
        """``(name, module)`` of the stem layers, in the order the
        backbone's forward runs them one after the other."""
        return [(name, getattr(backbone, name)) for name in cls.stem
                if hasattr(backbone, name)]

    @classmethod
    def prepare(cls, backbone: nn.Module, mode: str, **options):
        """``checkpoint_stem``: the first stem layer runs the whole stem
        under activation checkpointing, the others pass their input
        through."""
        if not (options['checkpoint_stem'] and mode == 'reversible'):
            return None
        layers = [m for _, m in cls.stem_layers(backbone)]
        return patch_forwards(
            [(layers[0], partial(stem_forward, layers))] +
            [(m, cls.passthrough) for m in layers[1:]])

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
            # the branch is its layers run in order: each piece computes a
            # halo only in the layers that reach along dimension 2
            layers = cls.branch_layers(block)
            radii = layer_radii(block, layers)
            if radii is not None:
                split = partial(split_layers, layers, radii, options)
            else:  # batch statistics: layer by layer, channel slices
                branch = layerwise_branch(layers, options) or branch
        return ResidualFunction(branch, [block], split)

    @classmethod
    def first_function(cls, block: nn.Module, fn: Optional[Callable],
                       options: dict) -> ResidualFunction:
        """A stage's first block as a function (``fn``, the OpenTAD form,
        or the block's own forward), split when asked and the block is
        local: per layer (:func:`first_block_pieces`) when its shortcut
        reaches no neighbour, else each piece through the whole block on
        the whole halo."""
        split = None
        if options.get('first_piece_mib'):
            options = dict(options, piece_mib=options['first_piece_mib'])
        if split_asked(options) and not getattr(block, 'non_local', False):
            layers = cls.branch_layers(block)
            radii = layer_radii(block, layers)
            downsample = getattr(block, 'downsample', None)
            shortcut = [] if downsample is None else [downsample]
            if radii is not None and layer_radii(block, shortcut) == \
                    [0] * len(shortcut) and \
                    layers[-1] is getattr(block, 'relu', None):
                split = partial(first_block_pieces, block, layers, radii,
                                fn is None, options)
            else:
                halo = conv_halo(block, [block])
                if halo is not None:
                    split = partial(split_branch, fn or block, halo, options)
                else:  # batch statistics: layer by layer, channel slices
                    fn = layerwise_first_block(block, layers, fn is None,
                                               options) or fn
        return ResidualFunction(fn or block, [block], split)

    @classmethod
    def make_forward(cls, spec: StageSpec, stage: RewiredStage) -> Callable:
        """The stage's forward: its first block, then the chain."""
        return partial(res_layer_forward, cls, spec.module, stage)

    @classmethod
    def non_reversible(cls, backbone: nn.Module,
                       stages: Sequence[RewiredStage]) -> Iterator:
        """The stem, plain stages, and the first block of rewired ones."""
        stem = 'checkpoint' if any(
            s.mode == 'reversible' and s.options['checkpoint_stem']
            for s in stages) else 'kept'
        for name, module in cls.stem_layers(backbone):
            yield name, module, stem
        for name in cls.res_layer_names(backbone):
            stage = next((s for s in stages if s.name == name or
                          s.name.endswith('.' + name)), None)
            if stage is None:
                yield name, backbone.get_submodule(name), 'kept'
            else:
                first = 'checkpoint' if stage.mode == 'reversible' and \
                    stage.options['checkpoint_first'] else 'kept'
                yield f'{name}.0', backbone.get_submodule(name)[0], first


def stem_forward(layers: Sequence[nn.Module], x: Tensor,
                 before: Optional[Callable] = None) -> Tensor:
    """The stem layers one after the other (after ``before``, e.g. a
    resampling of the clip), checkpointed when a gradient is needed: only
    ``x`` is kept (the replacement ``forward`` of the first layer)."""
    def run(t):  # the layers' own forwards (theirs are patched)
        if before is not None:
            t = before(t)
        for layer in layers:
            t = type(layer).forward(layer, t)
        return t
    if torch.is_grad_enabled() and (x.requires_grad or any(
            p.requires_grad for m in layers for p in m.parameters())):
        return checkpointed(layers[0], x, fn=run, modules=layers[1:])
    return run(x)


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


def layerwise_first_block(block: nn.Module, layers: Sequence[nn.Module],
                          relu_after_sum: bool,
                          options: dict) -> Optional[Callable]:
    """A first block whose branch and shortcut run layer by layer in
    channel slices (:func:`~.channel_pieces.layerwise_branch`: BatchNorm
    with batch statistics), the ReLU after the sum in MMAction2's form, on
    the branch in OpenTAD's; None when they cannot."""
    if getattr(block, 'non_local', False) or \
            layers[-1] is not getattr(block, 'relu', None):
        return None
    branch = layerwise_branch(layers[:-1] if relu_after_sum else layers,
                              options)
    downsample = getattr(block, 'downsample', None)
    shortcut = None if downsample is None else \
        layerwise_branch([downsample], options)
    if branch is None or (downsample is not None and shortcut is None):
        return None
    return partial(layerwise_block, block, branch, shortcut, relu_after_sum)


def layerwise_block(block: nn.Module, branch: Callable,
                    shortcut: Optional[Callable], relu_after_sum: bool,
                    x: Tensor) -> Tensor:
    """``branch(x) + shortcut(x)`` (or ``+ x``), then the block's ReLU in
    MMAction2's form."""
    out = branch(x) + (x if shortcut is None else shortcut(x))
    return block.relu(out) if relu_after_sum else out


def first_block_piece(block: nn.Module, layers: Sequence[nn.Module],
                      radii: Sequence[int], relu_after_sum: bool,
                      rows: range, read: range, length: int,
                      x: Tensor) -> Tensor:
    """One slice of a first block: its branch layer by layer
    (:func:`~.pieces.layers_piece`; the ReLU after the sum in MMAction2's
    form, on the branch in OpenTAD's), plus the shortcut of the slice."""
    branch = layers[:-1] if relu_after_sum else layers
    out = layers_piece(branch, radii[:len(branch)], rows, read, length, x)
    shortcut = x.narrow(2, rows.start - read.start, len(rows))
    if getattr(block, 'downsample', None) is not None:
        shortcut = block.downsample(shortcut)
    out = out + shortcut
    return block.relu(out) if relu_after_sum else out


def first_block_pieces(block: nn.Module, layers: Sequence[nn.Module],
                       radii: Sequence[int], relu_after_sum: bool,
                       options: dict, x: Tensor) -> List[Piece]:
    """Pieces of a first block (slices of dimension 2,
    :func:`~.pieces.halo_pieces`), each computed by
    :func:`first_block_piece`."""
    return halo_pieces(x, sum(radii), options, partial(
        partial, first_block_piece, block, layers, radii, relu_after_sum))


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
        f = adapter.first_function(blocks[0], first, stage.options)
        x = checkpointed(blocks[0], x, fn=f.fn) if f.split is None else \
            checkpoint_pieces(f, x)
    else:
        x = (first or blocks[0])(x)
    start, stop = stage.bounds
    return stage([adapter.function(b, stage.options)
                  for b in blocks[start:stop]], x)

"""Pieces shared by the adapters.

* :class:`ResLayerAdapter`: base of adapters whose stages are
  ``nn.Sequential`` s of residual blocks (ResNet3d, ResNet, TSM, X3D): the
  first block (projection shortcut) stays outside the chain, optionally
  checkpointed, in MMAction2's form or OpenTAD's (``first_block``), the
  blocks after it form the chain; a branch made of local layers is
  recomputed piece by piece along dimension 2 (time for 3D inputs, height
  for 2D ones), each piece read with the halo its kernels need.
* :func:`draw_drop_path` / :func:`apply_drop_path`: one drop-path mask for
  all pieces of a function.
* :func:`mlp_half` / :func:`split_mlp_half`: the MLP half of a pre-norm
  transformer block (ViT, MViT), whole or over slices of tokens;
  :func:`temporal_adapter_functions`: a block's temporal adapter.
"""
from contextlib import nullcontext
from functools import partial
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.utils.checkpoint import checkpoint

from ..reversible import (Piece, ResidualFunction, RewiredStage, num_pieces,
                          split_range)
from .base import FLOOR_PIECES, Adapter, StageSpec


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


def piece_bytes(options: dict) -> Optional[int]:
    """``piece_mib`` of the options in bytes (None when unset)."""
    mib = options.get('piece_mib')
    return int(mib * 2**20) if mib else None


def split_asked(options: dict) -> bool:
    """Whether the options ask for piecewise recompute."""
    return int(options.get('pieces') or 1) > 1 or \
        bool(options.get('piece_mib'))


# ---------------------------------------------------------------- drop path
def draw_drop_path(drop_path: nn.Module, x: Tensor):
    """The mask mmcv's ``DropPath`` would draw for an output shaped like
    ``x``, as ``(keep_prob, mask)``; None when it is off."""
    if not isinstance(drop_path, DropPath) or not drop_path.training or \
            drop_path.drop_prob == 0:
        return None
    keep = 1 - drop_path.drop_prob
    dtype = torch.get_autocast_dtype(x.device.type) \
        if torch.is_autocast_enabled(x.device.type) else x.dtype
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    return keep, (keep + torch.rand(shape, dtype=dtype,
                                    device=x.device)).floor()


def apply_drop_path(out: Tensor, drop) -> Tensor:
    """Drop path with a mask drawn by :func:`draw_drop_path`."""
    return out if drop is None else out.div(drop[0]) * drop[1]


def layer_scaled(block: nn.Module, name: str, out: Tensor) -> Tensor:
    """``gamma * out`` when the block has a layer scale called ``name``."""
    gamma = getattr(block, name, None)
    return out if gamma is None else gamma * out


def mlp_half(block: nn.Module, x: Tensor) -> Tensor:
    """``drop_path([gamma_2 *] mlp(norm2(x)))`` of a pre-norm block."""
    return block.drop_path(layer_scaled(block, 'gamma_2',
                                        block.mlp(block.norm2(x))))


def mlp_piece(block: nn.Module, drop, x: Tensor) -> Tensor:
    """The MLP half on a slice of tokens, with a shared drop-path mask."""
    out = layer_scaled(block, 'gamma_2', block.mlp(block.norm2(x)))
    return apply_drop_path(out, drop)


def split_mlp_half(block: nn.Module, options: dict,
                   x: Tensor) -> List[Piece]:
    """Pieces of the MLP half of ``(B, N, C)`` tokens: slices of N."""
    fn = partial(mlp_piece, block, draw_drop_path(block.drop_path, x))
    return [Piece((slice(None), slice(a, b)), (slice(None), slice(a, b)), fn)
            for a, b in split_range(x.shape[1], num_pieces(
                x, options.get('pieces'), piece_bytes(options)))]


def batch_head_pieces(fn: Callable, drop, batch: int, heads: int,
                      n: int) -> List[Piece]:
    """Pieces of an attention computed per sample and shared out by heads:
    slices of the batch (dimension 0, each with its slice of the drop-path
    mask ``drop``), then groups of heads within a slice (each adding its
    share); ``n`` pieces, or as near as the batch and the heads allow.
    ``fn(heads, drop, x)`` computes one piece (``heads`` a slice)."""
    slices = split_range(batch, min(batch, n))
    groups = min(heads, -(-n // len(slices)))
    pieces = []
    for a, b in slices:
        part = None if drop is None else (drop[0], drop[1][a:b])
        for h0, h1 in split_range(heads, groups):
            pieces.append(Piece((slice(a, b), ), (slice(a, b), ),
                                partial(fn, slice(h0, h1), part)))
    return pieces


def no_residual(x: Tensor) -> Tensor:
    """A residual function that adds nothing (a 0-d zero, broadcast)."""
    return x.new_zeros(())


# keeps the streams' roles after a temporal adapter: with F = 0 the chain
# step is h_k = h_{k-2}, so one such step would swap which stream the next
# function reads; two (the adapter at zero, then this) leave the chain as
# it was without the adapter
KEEP_STREAMS = ResidualFunction(no_residual, [])


def temporal_adapter_functions(block: nn.Module,
                               options: dict) -> List[ResidualFunction]:
    """The residual functions of ``block.temporal_adapter`` (see
    ``re2tal_mm/models/temporal_adapter.py``): its branch, then
    :data:`KEEP_STREAMS`, so a zero-initialised temporal adapter leaves the
    rewired backbone's function exactly as without it; empty without one.
    Its ``ClipGrid`` is bound now: the recompute in the backward uses the
    one of this forward. Split when asked: its convolution is along time
    only, so rows of the token grid are independent."""
    adapter = getattr(block, 'temporal_adapter', None)
    if adapter is None:
        return []
    grid = adapter.context
    split = partial(split_temporal_adapter, adapter, grid, options) \
        if split_asked(options) and grid is not None else None
    return [ResidualFunction(partial(adapter.residual, grid), [adapter],
                             split), KEEP_STREAMS]


def split_temporal_adapter(adapter: nn.Module, grid, options: dict,
                           x: Tensor) -> List[Piece]:
    """Pieces of a temporal adapter on ``(B * clips, t * h * w, C)``
    tokens: rows ``[h0, h1)`` of the grid, at every time step (segments of
    the token dimension)."""
    n, t, h, w = grid
    pieces = []
    for h0, h1 in split_range(h, num_pieces(x, options.get('pieces'),
                                            piece_bytes(options))):
        index = (slice(None), tuple(
            slice(k * h * w + h0 * w, k * h * w + h1 * w) for k in range(t)))
        pieces.append(Piece(index, index, partial(
            adapter.residual, type(grid)(n, t, h1 - h0, w))))
    return pieces


# --------------------------------------------------- convolution branches
# forms of a rewired stage's first block (``first_block``): MMAction2's
# block forward (ReLU after the sum), or OpenTAD's (ReLU on the branch)
FIRST_BLOCK_FORMS = ('mmaction', 'opentad')

# layers a branch may hold and stay local along dimension 2 (BatchNorm only
# in eval mode: batch statistics are not local)
POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish,
             nn.Sigmoid, nn.Identity, nn.Dropout)


def conv_halo(block: nn.Module, branch: Sequence[nn.Module]) -> Optional[int]:
    """Rows of dimension 2 a branch needs on each side of a slice: the sum
    of its kernels' radii along that dimension; None when the branch is not
    local (a stride, uneven padding, pooling, batch statistics, or a layer
    of unknown reach).

    Args:
        block (nn.Module): The block (for its branch's submodules).
        branch (Sequence[nn.Module]): The branch's top-level layers.
    """
    halo = 0
    for top in branch:
        for m in top.modules():
            if isinstance(m, _ConvNd):
                k, s = m.kernel_size[0], m.stride[0]
                p, d = m.padding[0], m.dilation[0]
                if s != 1 or k % 2 == 0 or isinstance(p, str) or \
                        p != d * (k - 1) // 2 or m.padding_mode != 'zeros':
                    return None
                halo += p
            elif isinstance(m, _BatchNorm):
                if m.training:
                    return None
            elif not list(m.children()) and not isinstance(m, POINTWISE) \
                    and type(m).__name__ not in LOCAL_LEAVES:
                return None
    return halo


# leaves known to act within each (N, C, H, W) sample or along the batch
# (TSM's shift folds clips into the batch), by class name: mmcv's Swish
LOCAL_LEAVES = {'Swish'}


def branch_piece(branch: Callable, start: int, length: int,
                 x: Tensor) -> Tensor:
    """``branch`` on a slice with halo, cropped to the ``length`` rows from
    ``start`` (relative to the slice)."""
    return branch(x).narrow(2, start, length)


def split_branch(branch: Callable, halo: int, options: dict,
                 x: Tensor) -> List[Piece]:
    """Pieces of a branch: slices of dimension 2 read with their halo."""
    T = x.shape[2]
    pieces = []
    for t0, t1 in split_range(T, num_pieces(x, options.get('pieces'),
                                            piece_bytes(options))):
        a, b = max(t0 - halo, 0), min(t1 + halo, T)
        pieces.append(Piece(
            (slice(None), slice(None), slice(a, b)),
            (slice(None), slice(None), slice(t0, t1)),
            partial(branch_piece, branch, t0 - a, t1 - t0)))
    return pieces


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

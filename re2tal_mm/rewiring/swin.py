"""Adapter for mmaction2's ``SwinTransformer3D``.

Each ``SwinTransformerBlock3D`` gives two residual functions, built from the
block's own methods: the attention half ``drop_path(forward_part1(x,
mask))`` and the MLP half ``forward_part2(x)`` (listed by
:func:`.halves.block_functions`, as ViT's and MViT's).
``BasicLayer.forward`` is re-expressed (:func:`rewired_layer_forward`: the
block loop becomes the chain, the stage's shifted-window mask is built
only when a whole-tensor call needs it); ``tests/test_rewiring_zoo.py``
pins it to the upstream forward in float64. The patch embedding,
``PatchMerging`` and the output norms stay non-reversible.

Options (none changes the function computed):

* ``windows_per_call`` (int, default 16): ``WindowAttention3D`` runs on
  this many windows at a time (its class ``forward`` on slices of windows,
  so the upstream attention still runs); 0 or None: all at once.
* ``pieces`` (int, default 1) / ``piece_mib`` (float, optional): the
  reversible engine computes each function piece by piece
  (:mod:`.swin_pieces`: boxes of whole shifted windows for the attention
  half, token boxes for the MLP half), at least ``pieces``, each input at
  most ``piece_mib`` MiB.
* ``merging`` (``'keep'``, ``'checkpoint'`` or ``'recompute'``, default
  ``'keep'``): ``PatchMerging`` kept as it is, checkpointed, or fused into
  the reversible stage before it and recomputed from its two streams
  (checkpointed where that stage's output is also a backbone output).
* ``freeze_patch_embed`` (bool, default False): no gradients for the patch
  embedding (its input clip is then not kept for the backward).
"""
from functools import partial
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmaction.models.backbones.swin import (BasicLayer, PatchMerging,
                                            SwinTransformer3D, compute_mask,
                                            get_window_size)
from ..reversible import (Piece, ResidualFunction, RewiredStage, num_pieces,
                          split_range)
from .base import (FLOOR_PIECES, Adapter, StageSpec, patch_forwards,
                   register_adapter)
from .halves import block_functions
from .pieces import piece_bytes, split_asked
from .swin_pieces import split_mlp_boxes, split_window_attention


def windows_per_call_attention(attn, n: int, x: Tensor,
                               mask: Optional[Tensor] = None) -> Tensor:
    """``WindowAttention3D.forward`` on ``n`` windows at a time.

    Windows are independent, so the result is the same; only the transient
    attention matrices (the largest tensors of a recompute) shrink. The
    class forward is looked up at call time, so a patched upstream reaches
    it.
    """
    forward = type(attn).forward
    total = x.shape[0]
    if not n or total <= n:
        return forward(attn, x, mask=mask)
    outs = []
    for start in range(0, total, n):
        part = x[start:start + n]
        part_mask = None
        if mask is not None:
            rows = torch.arange(start, start + part.shape[0],
                                device=mask.device) % mask.shape[0]
            part_mask = mask[rows]
        outs.append(forward(attn, part, mask=part_mask))
    return torch.cat(outs)


class LazyMask:
    """The stage's shifted-window mask (``compute_mask``), built on first
    use.

    The whole mask holds ``num_windows x N x N`` floats (79 MB for Swin-T's
    first stage at 32 frames, several times that while it is built) and
    would live as long as the stage's functions; pieces build their own part
    instead (:func:`.swin_pieces.piece_mask`).

    Args:
        *args: Arguments of ``compute_mask``.
    """

    def __init__(self, *args):
        self.args = args
        self.mask = None

    def __call__(self) -> Tensor:
        if self.mask is None:
            self.mask = compute_mask(*self.args)
        return self.mask


def window_attention_half(block, mask: LazyMask, x: Tensor) -> Tensor:
    """``drop_path(forward_part1(x, mask))`` of one Swin block."""
    _, shift_size = get_window_size(x.shape[1:4], block.window_size,
                                    block.shift_size)
    shifted = any(i > 0 for i in shift_size)
    return block.drop_path(block.forward_part1(x, mask() if shifted
                                               else None))


def part2_mlp_half(block, x: Tensor) -> Tensor:
    """``forward_part2(x)``: ``drop_path(MLP(norm2(x)))``, the block's own
    method (so a patched upstream reaches it)."""
    return block.forward_part2(x)


def half_modules(block) -> tuple:
    """The modules of each half of a Swin block."""
    return [block.norm1, block.attn], [block.norm2, block.mlp]


def layer_functions(layer: BasicLayer, mask: LazyMask,
                    options: dict) -> Sequence[ResidualFunction]:
    """The residual functions of a ``BasicLayer`` in chain order."""
    return block_functions(layer.blocks, options, window_attention_half,
                           mask, split_attention=split_window_attention,
                           mlp=part2_mlp_half, split_mlp=split_mlp_boxes,
                           modules=half_modules)


# ------------------------------------------------- non-reversible layers
def patch_merging(merging: PatchMerging, x: Tensor) -> Tensor:
    """The class forward of ``PatchMerging`` (its instance forward may be
    replaced while rewired)."""
    return PatchMerging.forward(merging, x)


def checkpointed_merging(merging: PatchMerging, x: Tensor) -> Tensor:
    """``PatchMerging`` under activation checkpointing (keeps its input)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return checkpoint(patch_merging, merging, x, use_reentrant=False)
    return patch_merging(merging, x)


def split_merging(merging: PatchMerging, options: dict,
                  x: Tensor) -> Sequence[Piece]:
    """Pieces of ``PatchMerging``: consecutive slices of time."""
    fn = partial(patch_merging, merging)
    return [Piece((slice(None), slice(d0, d1)), (slice(None), slice(d0, d1)),
                  fn)
            for d0, d1 in split_range(x.shape[1], num_pieces(
                x, options['pieces'], piece_bytes(options)))]


def merging_tail(merging: PatchMerging, options: dict) -> ResidualFunction:
    """``PatchMerging`` as the fused tail of a reversible stage."""
    return ResidualFunction(
        partial(patch_merging, merging), [merging],
        partial(split_merging, merging, options)
        if split_asked(options) else None)


def rewired_layer_forward(layer: BasicLayer, stage: RewiredStage, x: Tensor,
                          do_downsample: bool = True) -> Tensor:
    """``BasicLayer.forward`` with the block loop replaced by the chain
    (and the ``PatchMerging`` after it fused in when marked so)."""
    B, C, D, H, W = x.shape
    window_size, shift_size = get_window_size((D, H, W), layer.window_size,
                                              layer.shift_size)
    x = rearrange(x, 'b c d h w -> b d h w c')
    Dp = int(np.ceil(D / window_size[0])) * window_size[0]
    Hp = int(np.ceil(H / window_size[1])) * window_size[1]
    Wp = int(np.ceil(W / window_size[2])) * window_size[2]
    mask = LazyMask(Dp, Hp, Wp, window_size, shift_size, x.device)
    fused = stage.options['fuse_merging']
    x = stage(layer_functions(layer, mask, stage.options), x,
              merging_tail(layer.downsample, stage.options) if fused
              else None)
    if layer.downsample is not None and do_downsample and not fused:
        x = layer.downsample(x)
    return x


MERGING = ('keep', 'checkpoint', 'recompute')


@register_adapter
class SwinAdapter(Adapter):
    """Describes where ``SwinTransformer3D``'s residual functions are."""

    backbone_types = (SwinTransformer3D, )
    options = dict(windows_per_call=16, pieces=1, piece_mib=None,
                   merging='keep', freeze_patch_embed=False)
    presets = dict(fast=dict(windows_per_call=0),
                   floor=dict(FLOOR_PIECES, merging='recompute'))

    @staticmethod
    def fuses_merging(backbone: SwinTransformer3D, i: int,
                      merging: str) -> bool:
        """Whether the ``PatchMerging`` after layer ``i`` is recomputed
        inside its stage (not when that stage's output is returned)."""
        output = i in backbone.out_indices and \
            not backbone.out_after_downsample
        return merging == 'recompute' and not output and \
            backbone.layers[i].downsample is not None

    @classmethod
    def stages(cls, backbone: SwinTransformer3D, merging: str = 'keep',
               **options) -> Iterator[StageSpec]:
        """One stage per ``BasicLayer``."""
        for i, layer in enumerate(backbone.layers):
            n = len(layer.blocks)
            yield StageSpec(f'layers.{i}', layer, 2 * n, n, bounds=(0, n),
                            options=dict(fuse_merging=cls.fuses_merging(
                                backbone, i, merging)))

    @classmethod
    def prepare(cls, backbone: SwinTransformer3D, mode: str,
                windows_per_call: int = 16, merging: str = 'keep',
                freeze_patch_embed: bool = False, **_) -> Callable:
        """Wrap the window attentions, patch ``PatchMerging``, freeze the
        patch embedding, as the options say; returns the undo."""
        if merging not in MERGING:
            raise ValueError(f'merging must be one of {MERGING}, got '
                             f'{merging!r}')
        patches, frozen = [], []
        for i, layer in enumerate(backbone.layers):
            if windows_per_call:
                patches += [(blk.attn, partial(windows_per_call_attention,
                                               blk.attn, windows_per_call))
                            for blk in layer.blocks]
            ds = layer.downsample
            if ds is None or merging == 'keep':
                continue
            # SwinTransformer3D.forward may call the merging itself: a fused
            # one (run as the stage's tail) then passes its input through
            patches.append((ds, cls.passthrough if cls.fuses_merging(
                backbone, i, merging) else partial(checkpointed_merging, ds)))
        if freeze_patch_embed:
            frozen = [p for p in backbone.patch_embed.parameters()
                      if p.requires_grad]
            for p in frozen:
                p.requires_grad_(False)
        unpatch = patch_forwards(patches)

        def undo():
            unpatch()
            for p in frozen:
                p.requires_grad_(True)
        return undo

    @classmethod
    def make_forward(cls, spec: StageSpec, stage: RewiredStage) -> Callable:
        """The replacement forward of a ``BasicLayer``."""
        return partial(rewired_layer_forward, spec.module, stage)

    @classmethod
    def non_reversible(cls, backbone: SwinTransformer3D,
                       stages: Sequence[RewiredStage]) -> Iterator:
        """The patch embedding and every ``PatchMerging``, with policy."""
        frozen = not any(p.requires_grad
                         for p in backbone.patch_embed.parameters())
        yield 'patch_embed', backbone.patch_embed, \
            'frozen' if frozen else 'kept'
        fused = {s.name.rsplit('layers.', 1)[-1]
                 for s in stages if s.options.get('fuse_merging')}
        for i, layer in enumerate(backbone.layers):
            ds = layer.downsample
            if ds is None:
                continue
            policy = 'kept'
            if str(i) in fused:
                policy = 'recompute'
            elif 'forward' in ds.__dict__:
                policy = 'checkpoint'
            yield f'layers.{i}.downsample', ds, policy

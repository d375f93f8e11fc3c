"""Temporal adapters for VideoMAE / VideoMAE V2 ``VisionTransformer``.

Parameter-efficient end-to-end TAL after AdaTAD (Liu et al., "End-to-End
Temporal Action Detection with 1B Parameters Across 1000 Frames", CVPR
2024): the pretrained backbone is frozen and each chosen block gets a
*temporal adapter*, a small residual module after the whole block (after
its MLP half), AdaTAD's by default::

    a = GELU(down_proj(x))
    y = x + gamma * up_proj(a + conv(dwconv_t(a)))

``down_proj`` projects the tokens to ``embed_dims // reduction`` channels,
the depthwise convolution ``dwconv_t`` runs along time over the whole input
window (all clips of it, not one 16-frame clip), ``conv`` mixes the
channels, and ``up_proj`` is zero-initialised, so a freshly inserted
temporal adapter leaves the pretrained function unchanged (``gamma`` is
learnable).

* :func:`insert_temporal_adapters` inserts them in place (new keys
  ``blocks.<i>.temporal_adapter.*``, the original keys unchanged) and
  freezes every original parameter;
* :class:`ClipBatchedViT` (a ``VisionTransformer``, same state_dict keys)
  cuts a long window into clips of the backbone's own length (its position
  embedding is fixed to it), runs all clips through each block together
  and restores ``(B, C, T', H', W')``; it sets the temporal adapters'
  :class:`ClipGrid` per forward, the only way they learn how tokens map to
  the window.

Rewired (``rewire(vit)``), a block with a temporal adapter contributes a
third residual function to the one reversible stage of the ViT (see
``re2tal_mm/rewiring/vit.py``), followed by one that adds nothing and keeps
the two streams' roles (``KEEP_STREAMS`` in
``rewiring/temporal_adapter.py``), so zero-initialised temporal adapters
leave the rewired backbone's function exactly as it was too; unrewired,
:class:`ClipViTBlock` runs block and temporal adapter, optionally
checkpointed (the AdaTAD baseline).
"""
import math
from typing import List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import (BaseModule, constant_init, normal_init,
                            trunc_normal_init)
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from re2tal_mm.rewiring.halves import mlp_half
from re2tal_mm.rewiring.vit import ATTENTION, attention_half

from mmaction.models.backbones.vit_mae import Block, VisionTransformer
from mmaction.registry import MODELS

ADAPTER_ATTR = 'temporal_adapter'


class ClipGrid(NamedTuple):
    """How the tokens of a ``(B * clips, t * h * w, C)`` batch form the
    window: ``clips`` consecutive clips per window, each a ``t x h x w``
    token grid (time first, as ``VisionTransformer`` flattens them)."""
    clips: int
    t: int
    h: int
    w: int


@MODELS.register_module()
class TemporalAdapter(BaseModule):
    """A temporal adapter's residual branch (the ``+ x`` is the caller's),
    AdaTAD's published adapter (OpenTAD's ``vit_adapter.Adapter``)::

        a = GELU(down_proj(x))
        branch = gamma * up_proj(a + conv(dwconv_t(a)))

    ``dwconv_t`` is a depthwise convolution along time over the whole
    window (all clips of it, zero padding at the window's ends) and
    ``conv`` a pointwise one (channel mixing), both with biases.
    Parameter names and layouts are AdaTAD's (``Conv1d`` weights, a
    one-element ``gamma``), so an OpenTAD ``blocks.<i>.adapter.*`` tensor is
    ``blocks.<i>.temporal_adapter.*`` unchanged. ``up_proj`` starts at
    zero, so a fresh adapter leaves the backbone's function unchanged; the
    other parameters start as AdaTAD's (``down_proj`` truncated normal std
    0.02, ``dwconv`` / ``conv`` normal std ``sqrt(2 / fan_in)``, zero
    biases, ``gamma`` 1). Its ``clip_grid`` (a :class:`ClipGrid`, how the
    input tokens form the window) is set per forward by
    :func:`set_temporal_context`; a plain attribute, not in the state_dict.

    Args:
        embed_dims (int): Channels of the tokens.
        hidden_dims (int, optional): Bottleneck channels. Defaults to
            ``embed_dims // reduction``.
        reduction (int): Defaults to 4 (AdaTAD's ``adapter_mlp_ratio``
            0.25).
        kernel_size (int): Temporal kernel of the depthwise convolution (odd).
            Defaults to 3.
        init_gamma (float): Initial value of the learnable scale ``gamma``.
            Defaults to 1.
    """

    def __init__(self, embed_dims: int, hidden_dims: Optional[int] = None,
                 reduction: int = 4, kernel_size: int = 3,
                 init_gamma: float = 1.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        hidden = hidden_dims or embed_dims // reduction
        self.init_gamma = float(init_gamma)
        self.down_proj = nn.Linear(embed_dims, hidden)
        self.dwconv = nn.Conv1d(hidden, hidden, kernel_size,
                                padding=kernel_size // 2, groups=hidden)
        self.conv = nn.Conv1d(hidden, hidden, 1)
        self.act = nn.GELU()
        self.up_proj = nn.Linear(hidden, embed_dims)
        self.gamma = nn.Parameter(torch.full((1, ), self.init_gamma))
        self.clip_grid: Optional[ClipGrid] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """AdaTAD's initialisation; the up-projection at zero: the branch
        is 0 until trained."""
        trunc_normal_init(self.down_proj, std=0.02, bias=0)
        for conv in (self.dwconv, self.conv):
            fan_in = conv.weight[0].numel()
            normal_init(conv, std=math.sqrt(2.0 / fan_in), bias=0)
        constant_init(self.up_proj, 0)
        nn.init.constant_(self.gamma, self.init_gamma)

    def init_weights(self) -> None:
        """Keep this initialisation whatever the backbone's init_cfg (e.g.
        ViT's TruncNormal on every ``Linear``) did to the adapter."""
        super().init_weights()
        self.reset_parameters()

    def temporal(self, grid: ClipGrid, z: Tensor) -> Tensor:
        """``conv(dwconv_t(z))`` of ``(B * clips, t * h * w, d)`` tokens,
        the convolutions along the window's ``clips * t`` time steps."""
        n, t, h, w = grid
        Bn, N, d = z.shape
        if N != t * h * w or Bn % n:
            raise ValueError(f'tokens {tuple(z.shape)} do not match {grid}')
        # (B, n * t, h, w, d) -> (B * h * w, d, n * t): a sequence per pixel
        z = z.reshape(Bn // n, n * t, h, w, d).permute(0, 2, 3, 4, 1)
        z = self.conv(self.dwconv(z.reshape(-1, d, n * t)))
        return z.reshape(Bn // n, h, w, d, n * t).permute(
            0, 4, 1, 2, 3).reshape(Bn, N, d)

    def residual(self, grid: Optional[ClipGrid], x: Tensor) -> Tensor:
        """The branch on ``(B * clips, t * h * w, C)`` tokens."""
        if grid is None:
            raise RuntimeError(
                'TemporalAdapter has no ClipGrid: the backbone must set it '
                'per forward (ClipBatchedViT does; else call '
                'set_temporal_context(vit, ClipGrid(...)) first)')
        a = self.act(self.down_proj(x))
        # gamma folded into the up-projection: one output of x's size
        return F.linear(a + self.temporal(grid, a),
                        self.up_proj.weight * self.gamma,
                        self.up_proj.bias * self.gamma)

    def forward(self, x: Tensor, grid: Optional[ClipGrid] = None) -> Tensor:
        """``x`` plus the branch (``grid`` defaults to the one set)."""
        return x + self.residual(grid or self.clip_grid, x)

    def extra_repr(self) -> str:
        return f'clip_grid={self.clip_grid}'


class ClipViTBlock(Block):
    """mmaction2's ViT ``Block`` (the class a block is switched to, nothing
    else changes) with three options read from the instance:
    ``attention`` (``'upstream'`` or ``'sdpa'``, see
    ``re2tal_mm/rewiring/vit.py``), ``with_cp`` (activation checkpointing
    of block and temporal adapter) and an optional ``temporal_adapter``."""

    attention = 'upstream'
    with_cp = False

    def _forward(self, x: Tensor, grid: Optional[ClipGrid]) -> Tensor:
        if self.attention == 'upstream':
            x = Block.forward(self, x)
        else:
            x = x + attention_half(self, self.attention, x)
            x = x + mlp_half(self, x)
        adapter = getattr(self, ADAPTER_ATTR, None)
        return x if adapter is None else adapter(x, grid)

    def forward(self, x: Tensor) -> Tensor:
        adapter = getattr(self, ADAPTER_ATTR, None)
        # the grid is an argument: a checkpoint's recompute sees this one
        grid = adapter.clip_grid if adapter is not None else None
        if self.with_cp and torch.is_grad_enabled():
            return checkpoint(self._forward, x, grid, use_reentrant=False)
        return self._forward(x, grid)


def as_clip_blocks(vit: VisionTransformer, attention: str = 'upstream',
                   with_cp: bool = False) -> None:
    """Switch every block of ``vit`` to :class:`ClipViTBlock` with these
    options (parameters and keys untouched)."""
    if attention not in ATTENTION:
        raise ValueError(f'attention must be one of {ATTENTION}, got '
                         f'{attention!r}')
    for blk in vit.blocks:
        if not isinstance(blk, ClipViTBlock):
            blk.__class__ = ClipViTBlock
        blk.attention, blk.with_cp = attention, with_cp


def insert_temporal_adapters(vit: VisionTransformer,
                             blocks: Optional[Sequence[int]] = None,
                             freeze: bool = True, **cfg) -> List[str]:
    """Insert a :class:`TemporalAdapter` after the chosen blocks, in place.

    Args:
        vit (VisionTransformer): The backbone (VideoMAE / VideoMAE V2).
        blocks (Sequence[int], optional): Indices of the blocks (negative
            ones count from the end). Defaults to all.
        freeze (bool): Freeze every parameter ``vit`` had before (no
            gradient, hence no optimizer state). Defaults to True.
        **cfg: :class:`TemporalAdapter` options (``embed_dims`` is the
            backbone's).

    Returns:
        list[str]: Names of the new parameters (in ``vit``).
    """
    if freeze:
        for p in vit.parameters():
            p.requires_grad_(False)
    depth = len(vit.blocks)
    chosen = sorted({i % depth for i in (range(depth) if blocks is None
                                         else blocks)})
    for i in chosen:
        blk = vit.blocks[i]
        if getattr(blk, ADAPTER_ATTR, None) is not None:
            raise ValueError(f'blocks.{i} already has a temporal adapter')
        if not isinstance(blk, ClipViTBlock):
            blk.__class__ = ClipViTBlock
        adapter = TemporalAdapter(vit.embed_dims, **cfg)
        ref = next(blk.parameters())
        adapter.to(device=ref.device, dtype=ref.dtype)
        setattr(blk, ADAPTER_ATTR, adapter)
    return [f'blocks.{i}.{ADAPTER_ATTR}.{n}' for i in chosen
            for n, _ in vit.blocks[i].temporal_adapter.named_parameters()]


def temporal_adapters(module: nn.Module) -> List[TemporalAdapter]:
    """The temporal adapters inside ``module``."""
    return [m for m in module.modules() if isinstance(m, TemporalAdapter)]


def set_temporal_context(module: nn.Module, grid: ClipGrid) -> None:
    """Tell every temporal adapter in ``module`` how its input tokens form
    the window (kept until set again: recomputes in the backward use it)."""
    for m in temporal_adapters(module):
        m.clip_grid = ClipGrid(*grid)


@MODELS.register_module()
class ClipBatchedViT(VisionTransformer):
    """``VisionTransformer`` over windows longer than its clip length.

    A ``(B, C, T, H, W)`` window is cut into ``n = T / num_frames`` clips
    that go through every block together as a ``(B * n, ...)`` batch
    (attention within a clip, the temporal adapters' convolution across
    clips); the output is the feature map ``(B, C', n * t, h, w)``. State
    dict keys are ``VisionTransformer`` 's (plus the temporal adapters').

    Args:
        temporal_adapter (dict, optional): :class:`TemporalAdapter` options;
            given, temporal adapters are inserted in ``adapter_blocks`` and
            the backbone is frozen (see :func:`insert_temporal_adapters`).
        adapter_blocks (Sequence[int], optional): Defaults to all blocks.
        freeze (bool, optional): Freeze the original parameters. Defaults to
            True with temporal adapters, False without.
        attention (str): ``'upstream'`` or ``'sdpa'`` for the unrewired
            blocks (rewired ones take the rewiring's option).
            Defaults to ``'upstream'``.
        with_cp (bool): Checkpoint each unrewired block (with its temporal
            adapter). Defaults to False.
        **kwargs: ``VisionTransformer`` arguments (``return_feat_map`` is
            always True).
    """

    def __init__(self, temporal_adapter: Optional[dict] = None,
                 adapter_blocks: Optional[Sequence[int]] = None,
                 freeze: Optional[bool] = None, attention: str = 'upstream',
                 with_cp: bool = False, **kwargs):
        kwargs['return_feat_map'] = True
        super().__init__(**kwargs)
        self.clip_frames = kwargs.get('num_frames', 16)
        self.tubelet_size = kwargs.get('tubelet_size', 2)
        as_clip_blocks(self, attention, with_cp)
        if temporal_adapter is not None:
            insert_temporal_adapters(
                self, adapter_blocks,
                freeze=True if freeze is None else freeze,
                **temporal_adapter)
        elif freeze:
            self.requires_grad_(False)

    def forward_clips(self, x: Tensor) -> Tensor:
        """The feature map of each clip of ``(B, C, T, H, W)`` windows,
        ``(B * n, C', t, h, w)`` (clips of a window consecutive)."""
        B, C, T, H, W = x.shape
        L = self.clip_frames
        if T % L:
            raise ValueError(f'{T} frames are not a whole number of '
                             f'{L}-frame clips')
        n = T // L
        clips = x.reshape(B, C, n, L, H, W).transpose(1, 2).reshape(
            B * n, C, L, H, W)
        set_temporal_context(self, ClipGrid(
            n, L // self.tubelet_size, H // self.patch_size,
            W // self.patch_size))
        return super().forward(clips)

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        out = self.forward_clips(x)  # (B * n, C', t, h, w)
        Bn, D, t, h, w = out.shape
        return out.reshape(B, Bn // B, D, t, h, w).transpose(1, 2).reshape(
            B, D, Bn // B * t, h, w)

"""The published ActionFormer encoder: a convolutional-attention pyramid.

ActionFormer (Zhang et al., 2022) as its authors' code and OpenTAD (the
Re2TAL authors' codebase: ``Conv1DTransformerProj`` + ``FPNIdentity``)
compute it. Its attention projects queries, keys and values through masked
depthwise convolutions (stride 2 in the downsampling blocks) and their own
LayerNorms, its residual branches carry learnable per-channel scales
(``AffineDropPath``: a LayerScale, init 1e-4, then stochastic depth), the
downsampling blocks' skip path is a max pooling, and every level ends with a
LayerNorm (eps 1e-6) that is not re-masked. Our own
:class:`~re2tal_mm.models.ActionFormerNeck` is a lighter variant of the same
idea; this one loads OpenTAD's ActionFormer weights and gives their outputs.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import drop_path
from mmcv.cnn.bricks.scale import LayerScale
from mmengine.model import BaseModule
from torch import Tensor

from mmaction.registry import MODELS
from .neck import ChannelLayerNorm


def resize_mask(mask: Tensor, length: int) -> Tensor:
    """A ``(B, T)`` bool mask resized to ``length`` by nearest neighbour
    (``T // length`` subsampling for a strided convolution's output)."""
    if mask.shape[-1] == length:
        return mask
    return F.interpolate(mask[:, None].double(), size=length,
                         mode='nearest')[:, 0].bool()


def sinusoid_table(length: int, dims: int) -> Tensor:
    """``(1, dims, length)`` sine / cosine position table (channel ``2i``
    sine, ``2i + 1`` cosine of ``pos / 10000 ** (2i / dims)``), float32."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    freq = 10000**((2 * (torch.arange(dims) // 2)).double() / dims)
    angle = pos / freq
    angle[:, 0::2] = angle[:, 0::2].sin()
    angle[:, 1::2] = angle[:, 1::2].cos()
    return angle.float().t()[None]


class ScaledDropPath(LayerScale):
    """A per-channel learnable scale (MMCV's ``LayerScale``, channels first)
    followed by stochastic depth: OpenTAD's ``AffineDropPath``.

    Args:
        dims (int): Channels.
        drop_prob (float): Probability of dropping the branch of a sample.
            Defaults to 0.
        scale (float): Initial scale. Defaults to 1e-4.
    """

    def __init__(self, dims: int, drop_prob: float = 0.,
                 scale: float = 1e-4) -> None:
        super().__init__(dims, data_format='channels_first', scale=scale)
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(super().forward(x), self.drop_prob, self.training)


class ConvAttention(nn.Module):
    """Masked multi-head self-attention whose queries, keys and values each
    pass a bias-free depthwise convolution (kernel 3, or ``stride + 1`` when
    strided), a mask and a LayerNorm before their 1x1 projections.

    Args:
        dims (int): Channels.
        num_heads (int): Attention heads.
        stride (int): Temporal stride of the convolutions (1 or even).
            Defaults to 1.
        window_size (int): Keys each query sees, centred on it (odd);
            ``<= 1`` for global attention. Defaults to -1.
        attn_drop (float): Dropout of attention weights. Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to
            0.
    """

    def __init__(self, dims: int, num_heads: int, stride: int = 1,
                 window_size: int = -1, attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        assert dims % num_heads == 0 and (stride == 1 or stride % 2 == 0)
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.half = window_size // 2 if window_size > 1 else None
        kernel = stride + 1 if stride > 1 else 3
        for name in ('query', 'key', 'value'):
            self.add_module(f'{name}_conv', nn.Conv1d(
                dims, dims, kernel, stride, kernel // 2, groups=dims,
                bias=False))
            self.add_module(f'{name}_norm', ChannelLayerNorm(dims))
            self.add_module(name, nn.Conv1d(dims, dims, 1))
        self.proj = nn.Conv1d(dims, dims, 1)
        self.proj_drop = nn.Dropout(proj_drop)

    def _project(self, name: str, x: Tensor, mask: Tensor):
        """(B, H, T', d) heads of ``name`` and their (B, T') mask."""
        y = getattr(self, f'{name}_conv')(x)
        mask = resize_mask(mask, y.shape[-1])
        y = getattr(self, f'{name}_norm')(y * mask[:, None].to(y.dtype))
        y = getattr(self, name)(y)
        B, C, T = y.shape
        return y.view(B, self.num_heads, C // self.num_heads,
                      T).transpose(2, 3), mask

    def forward(self, x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        """x: (B, C, T); mask: (B, T) bool. Returns the (B, C, T') output
        (zero at padded positions) and its (B, T') mask."""
        q, q_mask = self._project('query', x, mask)
        k, k_mask = self._project('key', x, mask)
        v, _ = self._project('value', x, mask)
        attend = k_mask[:, None, None, :]
        if self.half is not None:
            pos = torch.arange(k.shape[2], device=x.device)
            attend = attend & ((pos[:, None] - pos).abs() <= self.half)
        # padded queries (zeroed below) attend anywhere: no empty softmax
        attend = attend | ~q_mask[:, None, :, None]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend,
            dropout_p=self.attn_drop if self.training else 0.)
        B, H, T, d = out.shape
        out = self.proj(out.transpose(2, 3).reshape(B, H * d, T))
        return self.proj_drop(out) * q_mask[:, None].to(out.dtype), q_mask


class ConvTransformerBlock(nn.Module):
    """Pre-norm transformer block with :class:`ConvAttention`, a GELU MLP
    and, when ``drop_path > 0``, :class:`ScaledDropPath` on both branches
    (OpenTAD's ``TransformerBlock``). With ``stride > 1`` the skip path is a
    max pooling (kernel ``stride + 1``) and the output is shorter.

    Args:
        dims (int): Channels.
        num_heads (int): Attention heads.
        stride (int): Temporal stride. Defaults to 1.
        window_size (int): Local attention window; ``<= 1`` global.
            Defaults to -1.
        mlp_ratio (float): Hidden width of the MLP over ``dims``. Defaults
            to 4.
        drop_path (float): Stochastic depth; its scales exist only when it
            is positive (as in OpenTAD). Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Dropout of the projections and MLP. Defaults to
            0.
    """

    def __init__(self, dims: int, num_heads: int, stride: int = 1,
                 window_size: int = -1, mlp_ratio: float = 4.,
                 drop_path: float = 0., attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        self.ln1, self.ln2 = ChannelLayerNorm(dims), ChannelLayerNorm(dims)
        self.attn = ConvAttention(dims, num_heads, stride, window_size,
                                  attn_drop, proj_drop)
        self.pool_skip = nn.MaxPool1d(
            stride + 1, stride, (stride + 1) // 2) if stride > 1 else \
            nn.Identity()
        hidden = int(dims * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Conv1d(dims, hidden, 1), nn.GELU(), nn.Dropout(proj_drop),
            nn.Conv1d(hidden, dims, 1), nn.Dropout(proj_drop))
        scaled = (lambda: ScaledDropPath(dims, drop_path)) \
            if drop_path > 0 else nn.Identity
        self.drop_path_attn, self.drop_path_mlp = scaled(), scaled()

    def forward(self, x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        out, mask = self.attn(self.ln1(x), mask)
        m = mask[:, None].to(out.dtype)
        x = self.pool_skip(x) * m + self.drop_path_attn(out)
        return x + self.drop_path_mlp(self.mlp(self.ln2(x)) * m), mask


@MODELS.register_module()
class ActionFormerTransformerNeck(BaseModule):
    """The published ActionFormer encoder (OpenTAD's
    ``Conv1DTransformerProj`` followed by ``FPNIdentity``).

    ``arch[0]`` masked embedding convolutions (each conv, mask, LayerNorm
    eps ``norm_eps``, ReLU, mask; bias-free when normalised), optional
    sinusoidal position embedding, ``arch[1]`` full-length transformer
    blocks (level 0) and ``arch[2]`` stride-2 blocks (levels 1..), every
    level then normalised by a LayerNorm (eps ``norm_eps``). Input lengths
    must be divisible by ``2 ** arch[2]`` (the localizer pads them).

    Args:
        in_channels (int): Input feature channels.
        embed_dims (int): Channels of every level. Defaults to 512.
        arch (Sequence[int]): Embedding convs, full-length blocks, stride-2
            blocks. Defaults to (2, 2, 5).
        kernel_size (int): Embedding conv kernel. Defaults to 3.
        num_heads (int): Attention heads. Defaults to 4.
        window_size (int | Sequence[int]): Local attention window (odd) of
            every level, or one per level (``1 + arch[2]``); ``-1`` for
            global attention (the Re2TAL recipes). Defaults to 19.
        mlp_ratio (float): MLP width ratio. Defaults to 4.
        drop_path (float): Stochastic depth of every block; when positive
            each branch also has a learnable per-channel scale. Defaults to
            0.1.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Dropout of projections and MLPs. Defaults to 0.
        input_drop (float): Channel dropout of the input. Defaults to 0.
        embed_norm (bool): LayerNorm in the embedding convs. Defaults to
            True.
        norm_eps (float): Eps of the embedding and output LayerNorms (the
            blocks' own LayerNorms use 1e-5, as in OpenTAD). Defaults to
            1e-6.
        abs_pe (bool): Add a sinusoidal position embedding (scaled by
            ``embed_dims ** -0.5``) after the embedding. Defaults to False.
        max_seq_len (int): Length of the position table (longer inputs in
            eval mode interpolate it). Defaults to 2304.
        out_norm (bool): LayerNorm on every level. Defaults to True.
        mask_outputs (bool): Zero the padded positions of the normalised
            levels. OpenTAD does not (they hold the LayerNorm's bias, which
            the head's convolutions see next to the valid positions).
            Defaults to False.
        init_cfg (dict, optional): MMEngine init config. Defaults to None.
    """

    def __init__(self, in_channels: int, embed_dims: int = 512,
                 arch: Sequence[int] = (2, 2, 5), kernel_size: int = 3,
                 num_heads: int = 4,
                 window_size: Union[int, Sequence[int]] = 19,
                 mlp_ratio: float = 4., drop_path: float = 0.1,
                 attn_drop: float = 0., proj_drop: float = 0.,
                 input_drop: float = 0., embed_norm: bool = True,
                 norm_eps: float = 1e-6, abs_pe: bool = False,
                 max_seq_len: int = 2304, out_norm: bool = True,
                 mask_outputs: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        num_embed, num_stem, num_branch = arch
        windows = [window_size] * (1 + num_branch) if isinstance(
            window_size, int) else list(window_size)
        if len(windows) != 1 + num_branch:
            raise ValueError(f'window_size gives {len(windows)} windows, '
                             f'the neck has {1 + num_branch} levels')
        self.input_drop = nn.Dropout1d(input_drop) if input_drop else None
        self.embed_convs = nn.ModuleList(
            nn.Conv1d(in_channels if i == 0 else embed_dims, embed_dims,
                      kernel_size, padding=kernel_size // 2,
                      bias=not embed_norm) for i in range(num_embed))
        self.embed_norms = nn.ModuleList(
            ChannelLayerNorm(embed_dims, eps=norm_eps) if embed_norm else
            nn.Identity() for _ in range(num_embed))
        self.max_seq_len = max_seq_len
        if abs_pe:
            self.register_buffer(
                'pos_embed', sinusoid_table(max_seq_len, embed_dims) /
                math.sqrt(embed_dims), persistent=False)
        else:
            self.pos_embed = None

        def block(stride, window):
            return ConvTransformerBlock(embed_dims, num_heads, stride,
                                        window, mlp_ratio, drop_path,
                                        attn_drop, proj_drop)

        self.stem = nn.ModuleList(
            block(1, windows[0]) for _ in range(num_stem))
        self.branch = nn.ModuleList(
            block(2, windows[1 + i]) for i in range(num_branch))
        self.out_norms = nn.ModuleList(
            ChannelLayerNorm(embed_dims, eps=norm_eps) if out_norm else
            nn.Identity() for _ in range(1 + num_branch))
        self.mask_outputs = mask_outputs

    def _position(self, x: Tensor, m: Tensor) -> Tensor:
        T = x.shape[-1]
        pe = self.pos_embed
        if self.training and T > self.max_seq_len:
            raise ValueError(f'input length {T} exceeds max_seq_len '
                             f'{self.max_seq_len} of the position table')
        if not self.training and T >= self.max_seq_len:
            pe = F.interpolate(pe, T, mode='linear', align_corners=False)
        return x + pe[..., :T].to(x.dtype) * m

    def forward(self, x: Tensor,
                mask: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        """x: (B, C, T) features; mask: (B, T) bool valid positions.

        Returns:
            tuple[list[Tensor], list[Tensor]]: per level (B, D, T_l)
            features and (B, T_l) masks.
        """
        m = mask[:, None].to(x.dtype)
        if self.input_drop is not None:
            x = self.input_drop(x)
        for conv, norm in zip(self.embed_convs, self.embed_norms):
            x = F.relu(norm(conv(x) * m)) * m
        if self.pos_embed is not None:
            x = self._position(x, m)
        for blk in self.stem:
            x, mask = blk(x, mask)
        feats, masks = [x], [mask]
        for blk in self.branch:
            x, mask = blk(x, mask)
            feats.append(x)
            masks.append(mask)
        feats = [norm(f) for norm, f in zip(self.out_norms, feats)]
        if self.mask_outputs:
            feats = [f * k[:, None].to(f.dtype) for f, k in zip(feats, masks)]
        return feats, masks

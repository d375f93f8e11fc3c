"""ActionFormer-style multi-scale temporal encoder (local self-attention)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import drop_path
from mmengine.model import BaseModule

from mmaction.registry import MODELS


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, T)`` tensor."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention of every position to the ``window_size``
    positions centred on it, ignoring padded positions.

    Args:
        dims (int): Channels.
        num_heads (int): Attention heads.
        window_size (int): Odd number of keys each query sees.
        attn_drop (float): Dropout of attention weights.
    """

    def __init__(self, dims, num_heads, window_size, attn_drop=0.):
        super().__init__()
        assert dims % num_heads == 0 and window_size % 2 == 1
        self.num_heads, self.half = num_heads, window_size // 2
        self.qkv = nn.Conv1d(dims, 3 * dims, 1)
        self.proj = nn.Conv1d(dims, dims, 1)
        self.attn_drop = nn.Dropout(attn_drop)

    def forward(self, x, mask):
        """x: (B, C, T); mask: (B, T) bool, True where valid."""
        B, C, T = x.shape
        H, w = self.num_heads, self.half
        q, k, v = self.qkv(x).view(B, 3, H, C // H, T).unbind(1)
        # keys / values of each query's window: (B, H, d, T, 2w+1)
        k = F.pad(k, (w, w)).unfold(-1, 2 * w + 1, 1)
        v = F.pad(v, (w, w)).unfold(-1, 2 * w + 1, 1)
        kmask = F.pad(mask, (w, w)).unfold(-1, 2 * w + 1, 1)  # (B, T, 2w+1)
        attn = torch.einsum('bhdt,bhdtw->bhtw', q, k) * (C // H)**-0.5
        attn = attn.masked_fill(~kmask[:, None], float('-inf'))
        attn = torch.nan_to_num(attn.softmax(-1))  # fully padded rows -> 0
        out = torch.einsum('bhtw,bhdtw->bhdt', self.attn_drop(attn), v)
        return self.proj(out.reshape(B, C, T)) * mask[:, None]


class LocalTransformerBlock(nn.Module):
    """Pre-norm transformer block with local attention and stochastic depth,
    optionally downsampling the sequence by 2 first (max pooling).

    Args:
        dims (int): Channels.
        num_heads (int): Attention heads.
        window_size (int): Local attention window.
        mlp_ratio (float): Hidden width of the MLP over ``dims``.
        drop_path (float): Stochastic depth probability.
        downsample (bool): Halve the temporal length before the block.
    """

    def __init__(self, dims, num_heads, window_size, mlp_ratio=4.,
                 drop_path=0., downsample=False, attn_drop=0.):
        super().__init__()
        self.downsample, self.drop_path = downsample, drop_path
        self.norm1 = ChannelLayerNorm(dims)
        self.attn = LocalSelfAttention(dims, num_heads, window_size,
                                       attn_drop)
        self.norm2 = ChannelLayerNorm(dims)
        hidden = int(dims * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Conv1d(dims, hidden, 1), nn.GELU(), nn.Conv1d(hidden, dims, 1))

    def forward(self, x, mask):
        if self.downsample:
            # zero padding, like the masked positions, keeps padding invariance
            x = F.max_pool1d(F.pad(x, (1, 1)), 3, 2)
            mask = mask[:, ::2]
        m = mask[:, None].to(x.dtype)
        x = x + drop_path(self.attn(self.norm1(x), mask), self.drop_path,
                          self.training)
        x = x + drop_path(self.mlp(self.norm2(x)) * m, self.drop_path,
                          self.training)
        return x * m, mask


@MODELS.register_module()
class ActionFormerNeck(BaseModule):
    """Conv stem then a pyramid of local-attention transformer levels.

    Level 0 keeps the input length (the output of ``num_stem_blocks``
    transformer blocks); each further level halves it, so the default 6
    levels have strides 1, 2, ..., 32. Input lengths must be divisible by
    ``2 ** (num_levels - 1)`` (the localizer pads them). The published
    ActionFormer has two full-length blocks and a LayerNorm on every level's
    output (``num_stem_blocks=2, out_norm=True``).

    Args:
        in_channels (int): Input feature channels.
        embed_dims (int): Channels of every level. Defaults to 256.
        num_levels (int): Pyramid levels. Defaults to 6.
        num_stem_convs (int): Masked conv layers of the stem (after the
            embedding conv). Defaults to 2.
        num_heads (int): Attention heads. Defaults to 4.
        window_size (int): Local attention window (odd). Defaults to 19.
        mlp_ratio (float): MLP width ratio. Defaults to 4.
        drop_path (float): Stochastic depth of the last block, linearly
            increasing from 0 over the levels (the full-length blocks before
            level 0 have none). Defaults to 0.1.
        attn_drop (float): Attention dropout. Defaults to 0.
        num_stem_blocks (int): Transformer blocks at full length, the last
            of which is level 0. Defaults to 1.
        out_norm (bool): LayerNorm on every level's output. Defaults to
            False.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self, in_channels, embed_dims=256, num_levels=6,
                 num_stem_convs=2, num_heads=4, window_size=19, mlp_ratio=4.,
                 drop_path=0.1, attn_drop=0., num_stem_blocks: int = 1,
                 out_norm: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        assert num_stem_blocks >= 1, 'level 0 is the last stem block'
        self.num_levels = num_levels
        self.embed = nn.Conv1d(in_channels, embed_dims, 3, padding=1)
        self.stem = nn.ModuleList(
            nn.Conv1d(embed_dims, embed_dims, 3, padding=1)
            for _ in range(num_stem_convs))
        self.stem_norms = nn.ModuleList(
            ChannelLayerNorm(embed_dims) for _ in range(num_stem_convs))
        dpr = torch.linspace(0, drop_path, num_levels).tolist()
        self.stem_blocks = nn.ModuleList(
            LocalTransformerBlock(embed_dims, num_heads, window_size,
                                  mlp_ratio, 0., False, attn_drop)
            for _ in range(num_stem_blocks - 1))
        self.levels = nn.ModuleList(
            LocalTransformerBlock(embed_dims, num_heads, window_size,
                                  mlp_ratio, dpr[i], i > 0, attn_drop)
            for i in range(num_levels))
        self.out_norms = nn.ModuleList(
            ChannelLayerNorm(embed_dims) if out_norm else nn.Identity()
            for _ in range(num_levels))

    def forward(self, x, mask):
        """x: (B, C, T) features; mask: (B, T) bool valid positions.

        Returns:
            tuple[list[Tensor], list[Tensor]]: per level (B, D, T_l) features
            and (B, T_l) masks.
        """
        m = mask[:, None].to(x.dtype)
        x = F.relu(self.embed(x * m)) * m
        for conv, norm in zip(self.stem, self.stem_norms):
            x = F.relu(norm(conv(x))) * m
        for block in self.stem_blocks:
            x, mask = block(x, mask)
        feats, masks = [], []
        for level, norm in zip(self.levels, self.out_norms):
            x, mask = level(x, mask)
            # a LayerNorm of zeroed padding is its bias: zero it again
            feats.append(norm(x) * mask[:, None].to(x.dtype))
            masks.append(mask)
        return feats, masks

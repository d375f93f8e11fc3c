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

Options ``chunks`` / ``chunk_mib``: the reversible engine computes a residual
branch in pieces along time, each read with the temporal halo its kernels
need (the sum of their temporal radii). Batch statistics are not local, so a
branch is split only while all its norms are BatchNorms in eval mode
(``norm_eval=True``, the usual setting for fine-tuning); otherwise it runs
whole.
"""
from functools import partial
from typing import List, Optional

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmaction.models.backbones.resnet3d import (BasicBlock3d, Bottleneck3d,
                                                ResNet3d)

from ..reversible import (Chunk, ResidualFunction, RewiredStage, num_chunks,
                          split_range)
from .base import register_adapter
from .common import (ResLayerAdapter, checkpoints_first,
                     rewired_res_layer_forward)


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


def temporal_halo(block) -> Optional[int]:
    """Frames of context a residual branch needs on each side of a time
    slice (sum of its temporal kernel radii), or None when it cannot be
    split along time (strided, unevenly padded, or batch statistics)."""
    convs = [block.conv1, block.conv2]
    if isinstance(block, Bottleneck3d):
        convs.append(block.conv3)
    for m in block.modules():
        if (isinstance(m, _BatchNorm) and m.training) or \
                isinstance(m, (nn.GroupNorm, nn.InstanceNorm3d,
                               nn.LayerNorm)):
            return None
    halo = 0
    for conv_module in convs:
        conv = getattr(conv_module, 'conv', conv_module)
        k, s = conv.kernel_size[0], conv.stride[0]
        p, d = conv.padding[0], conv.dilation[0]
        if s != 1 or k % 2 == 0 or p != d * (k - 1) // 2 or \
                conv.padding_mode != 'zeros':
            return None
        halo += p
    return halo


def branch_piece(block, start: int, length: int, x: Tensor) -> Tensor:
    """The residual branch on a time slice with halo, cropped to the
    ``length`` frames from ``start`` (relative to the slice)."""
    return residual_branch(block, x).narrow(2, start, length)


def split_branch(block, halo: int, chunks: int, chunk_bytes,
                 x: Tensor) -> List[Chunk]:
    """Pieces of a residual branch: time slices read with their halo."""
    T = x.shape[2]
    pieces = []
    for t0, t1 in split_range(T, num_chunks(x, chunks, chunk_bytes)):
        a, b = max(t0 - halo, 0), min(t1 + halo, T)
        pieces.append(Chunk(
            (slice(None), slice(None), slice(a, b)),
            (slice(None), slice(None), slice(t0, t1)),
            partial(branch_piece, block, t0 - a, t1 - t0)))
    return pieces


def branch_function(block, chunks: int = 1,
                    chunk_bytes=None) -> ResidualFunction:
    """The residual function of ``block``, split along time when asked and
    possible."""
    split = None
    if chunks > 1 or chunk_bytes:
        halo = temporal_halo(block)
        if halo is not None:
            split = partial(split_branch, block, halo, chunks, chunk_bytes)
    return ResidualFunction(partial(residual_branch, block), [block], split)


@register_adapter
class ResNet3dAdapter(ResLayerAdapter):
    """Describes where ``ResNet3d``'s residual functions are.

    Options: ``checkpoint_first`` (bool, default True), ``chunks`` (int,
    default 1) and ``chunk_mib`` (float, optional), see the module doc.
    """

    backbone_types = (ResNet3d, )
    options = dict(checkpoint_first=True, chunks=1, chunk_mib=None)
    residual_branch = staticmethod(residual_branch)
    is_chainable = staticmethod(is_chainable)

    @classmethod
    def non_reversible(cls, backbone: ResNet3d):
        """``(name, module, policy)`` of the layers outside the chains."""
        yield 'conv1', backbone.conv1, 'kept'
        for name, stage_module, _, _ in cls.stages(backbone):
            if stage_module is None:
                yield name, getattr(backbone, name), 'kept'
            else:
                first = 'checkpoint' if checkpoints_first(stage_module) \
                    else 'kept'
                yield f'{name}.0', stage_module[0], first

    @staticmethod
    def make_forward(stage_module, stage: RewiredStage,
                     checkpoint_first: bool = True, chunks: int = 1,
                     chunk_mib=None):
        """The replacement forward bound to ``stage_module``."""
        chunk_bytes = int(chunk_mib * 2**20) if chunk_mib else None
        return partial(rewired_res_layer_forward, stage_module, stage,
                       partial(branch_function, chunks=int(chunks),
                               chunk_bytes=chunk_bytes), checkpoint_first)

"""Backbones measured by ``benchmark_memory.py``, by name.

Each builder takes ``with_cp`` (activation checkpointing where the backbone
offers it) and returns a randomly initialised backbone. ``INPUTS`` names the
input layout when it is not ``(N, 3, T, H, W)``.
"""
from functools import partial
from typing import Callable, Dict


def swin_t(with_cp: bool):
    """MMAction2's Swin-T (``SwinTransformer3D(arch='tiny')``)."""
    from mmaction.models.backbones import SwinTransformer3D
    return SwinTransformer3D(arch='tiny', pretrained=None,
                             pretrained2d=False, with_cp=with_cp)


def slowfast_r50(with_cp: bool):
    """SlowFast-R50 in the layout of the Re2TAL SlowFast-R101 recipes
    (``configs/re2tal/re2tal_slowfast-r101_*``): slow pathway on every 4th
    frame, fast pathway on every frame, lateral kernel 7, no temporal
    downsampling, BatchNorm frozen as ``frozen_backbone_norms`` freezes it
    (eval mode, affine parameters out of training)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from mmaction.models.backbones import ResNet3dSlowFast
    slow = dict(type='resnet3d', depth=50, pretrained=None, lateral=True,
                fusion_kernel=7, conv1_kernel=(1, 7, 7), conv1_stride_t=1,
                pool1_stride_t=1, inflate=(0, 0, 1, 1), norm_eval=True,
                with_cp=with_cp)
    fast = dict(type='resnet3d', depth=50, pretrained=None, lateral=False,
                base_channels=8, conv1_kernel=(5, 7, 7), conv1_stride_t=1,
                pool1_stride_t=1, norm_eval=True, with_cp=with_cp)
    model = ResNet3dSlowFast(resample_rate=4, speed_ratio=4,
                             channel_ratio=8, slow_pathway=slow,
                             fast_pathway=fast)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.requires_grad_(False)
    return model


def no_checkpointing(name: str, with_cp: bool) -> None:
    """Refuse ``with_cp`` for backbones that have no such option."""
    if with_cp:
        raise ValueError(f'{name} has no activation checkpointing (with_cp)')


def vit_b(with_cp: bool, depth: int = 12):
    """VideoMAE ViT-B/16 (16 frames, tubelet 2, mean pooling)."""
    from mmaction.models.backbones import VisionTransformer
    no_checkpointing('VisionTransformer', with_cp)
    return VisionTransformer(img_size=224, patch_size=16, embed_dims=768,
                             depth=depth, num_heads=12, mlp_ratio=4,
                             qkv_bias=True, num_frames=16, tubelet_size=2)


def vit_b_24(with_cp: bool):
    """A 24-block ViT of ViT-B width (to check memory is depth-free)."""
    return vit_b(with_cp, depth=24)


def mvit_s(with_cp: bool):
    """MViTv2-S (16 frames, 224 px; patch tokens only, no cls output)."""
    from mmaction.models.backbones import MViT
    no_checkpointing('MViT', with_cp)
    return MViT(arch='small', spatial_size=224, temporal_size=16,
                output_cls_token=False)


def x3d_m(with_cp: bool):
    """X3D-M (``gamma_b=2.25, gamma_d=2.2``)."""
    from mmaction.models.backbones import X3D
    return X3D(gamma_w=1, gamma_b=2.25, gamma_d=2.2, with_cp=with_cp)


def tsm_r50(with_cp: bool):
    """TSM-R50 (8 segments; the frames of an input are folded into the
    batch, 8 at a time)."""
    from mmaction.models.backbones import ResNetTSM
    return ResNetTSM(depth=50, num_segments=8, pretrained=None,
                     with_cp=with_cp)


def swin_stage(depth: int, with_cp: bool):
    """One Swin-T first stage (96 channels, 3 heads, window 8x7x7) with
    ``depth`` blocks and no downsampling: the depth study of the memory
    benchmark."""
    from mmaction.models.backbones import SwinTransformer3D
    return SwinTransformer3D(
        arch=dict(embed_dims=96, depths=(depth, ), num_heads=(3, )),
        out_indices=(0, ), pretrained=None, pretrained2d=False,
        with_cp=with_cp)


# ViT models that also have the temporal-adapter variants of
# ``benchmark_memory.py`` (as ``ClipBatchedViT``: windows cut into 16-frame
# clips): name -> (depth, embed_dims, num_heads)
CLIP_VITS = {'vit-b': (12, 768, 12), 'vit-b-24': (24, 768, 12)}
# the three variants of parameter-efficient end-to-end TAL, all with the
# same attention kernel (SDPA)
ADAPTER_VARIANTS = ('full', 'adatad', 'reversible+adapters')


def clip_vit(name: str, variant: str):
    """``ClipBatchedViT`` of the ViT ``name`` for ``variant``: ``'full'``
    (no temporal adapter, all trainable), ``'adatad'`` (frozen, temporal
    adapters in every block, checkpointed blocks) or
    ``'reversible+adapters'`` (frozen, temporal adapters, rewired with
    ``memory='floor'``); SDPA attention in every variant."""
    import re2tal_mm  # noqa: F401  (before mmaction.models)
    from re2tal_mm.models import ClipBatchedViT
    from re2tal_mm.rewiring import rewire
    depth, dims, heads = CLIP_VITS[name]
    model = ClipBatchedViT(
        img_size=224, patch_size=16, embed_dims=dims, depth=depth,
        num_heads=heads, mlp_ratio=4, qkv_bias=True, num_frames=16,
        tubelet_size=2, use_mean_pooling=False, attention='sdpa',
        with_cp=variant == 'adatad',
        temporal_adapter=None if variant == 'full' else dict())
    if variant == 'reversible+adapters':
        rewire(model, 'reversible', memory='floor', attention='sdpa')
    return model.train()


BUILDERS: Dict[str, Callable] = {
    'swin-t': swin_t,
    'swin-stage-d2': partial(swin_stage, 2),
    'swin-stage-d6': partial(swin_stage, 6),
    'swin-stage-d18': partial(swin_stage, 18),
    'slowfast-r50': slowfast_r50,
    'vit-b': vit_b,
    'vit-b-24': vit_b_24,
    'mvit-s': mvit_s,
    'x3d-m': x3d_m,
    'tsm-r50': tsm_r50,
}
# models without activation checkpointing: no ``with_cp`` variant
WITHOUT_CP = frozenset({'vit-b', 'vit-b-24', 'mvit-s'})
# models whose input is not (N, 3, T, H, W): 'NCHW' is a 2D backbone taking
# the frames folded into the batch, (N * T, 3, H, W)
INPUTS: Dict[str, str] = {'tsm-r50': 'NCHW'}


def build_backbone(name: str, with_cp: bool):
    """The backbone called ``name``, in train mode."""
    import re2tal_mm  # noqa: F401  (before mmaction.models)
    model = BUILDERS[name](with_cp)
    model.train()  # some mm backbones' train() returns None
    return model

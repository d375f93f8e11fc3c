"""Backbones measured by ``benchmark_memory.py``, by name.

Each builder takes ``with_cp`` (activation checkpointing where the backbone
offers it) and returns a randomly initialised backbone. ``INPUTS`` names the
input layout when it is not ``(N, 3, T, H, W)``.
"""
from typing import Callable, Dict


def swin_t(with_cp: bool):
    """MMAction2's Swin-T (``SwinTransformer3D(arch='tiny')``)."""
    from mmaction.models.backbones import SwinTransformer3D
    return SwinTransformer3D(arch='tiny', pretrained=None,
                             pretrained2d=False, with_cp=with_cp)


def slowfast_r50(with_cp: bool):
    """SlowFast-R50 (4x16 style pathways, temporal strides 1)."""
    from mmaction.models.backbones import ResNet3dSlowFast
    slow = dict(type='resnet3d', depth=50, pretrained=None, lateral=True,
                conv1_kernel=(1, 7, 7), conv1_stride_t=1, pool1_stride_t=1,
                inflate=(0, 0, 1, 1), with_cp=with_cp)
    fast = dict(type='resnet3d', depth=50, pretrained=None, lateral=False,
                base_channels=8, conv1_kernel=(5, 7, 7), conv1_stride_t=1,
                pool1_stride_t=1, with_cp=with_cp)
    return ResNet3dSlowFast(slow_pathway=slow, fast_pathway=fast)


BUILDERS: Dict[str, Callable] = {
    'swin-t': swin_t,
    'slowfast-r50': slowfast_r50,
}
# models whose input is not (N, 3, T, H, W), e.g. 2D backbones: (N*T, 3, H, W)
INPUTS: Dict[str, str] = {}


def build_backbone(name: str, with_cp: bool):
    """The backbone called ``name``, in train mode."""
    import re2tal_mm  # noqa: F401  (before mmaction.models)
    model = BUILDERS[name](with_cp)
    model.train()  # some mm backbones' train() returns None
    return model

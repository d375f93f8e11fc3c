"""OpenTAD's AdaTAD backbone, ``VisionTransformerAdapter``, here.

OpenTAD's VideoMAE ViT with temporal adapters
(``opentad/models/backbones/vit_adapter.py``) is our
:class:`~re2tal_mm.models.ClipBatchedViT` (MMAction2's
``VisionTransformer``, ``return_feat_map=True``) with a
:class:`~re2tal_mm.models.TemporalAdapter` (AdaTAD's formula is ours)
after each block of ``adapter_index``: the ViT keys are MMAction2's, an
adapter's ``blocks.<i>.adapter.*`` is our ``blocks.<i>.temporal_adapter.*``,
tensors unchanged (49 of 49 in the fixture, the unused ``fc_norm``
included).

OpenTAD feeds the backbone the clips of a window as a batch and its adapters
read the window from ``total_frames``; ours takes the ``(B, C, T, H, W)``
window itself (``forward_clips`` gives the per-clip feature maps), so a
window must hold ``total_frames`` frames for the two to agree. The pooled
features (OpenTAD's post-processing pipeline: mean over space, clips back to
the window, linear interpolation to ``total_frames``) are the localizer's own
pooling with ``feat_len=total_frames`` (:func:`model_cfg` gives it).
"""
import re
from typing import Dict, List, Mapping, Tuple

import torch
from torch import Tensor

from .keys import map_keys

#: a backbone's part of an OpenTAD checkpoint
ROLE = 'backbone'
#: AdaTAD's backbone is not rewired (its blocks are checkpointed, with_cp)
REWIRING = None

#: OpenTAD constructor arguments that name the class, not a setting
_IGNORED = ('cls', 'type', 'pretrained', 'init_cfg')
#: OpenTAD's defaults of the arguments we read
_DEFAULTS = dict(
    img_size=224, patch_size=16, in_channels=3, embed_dims=768, depth=12,
    num_heads=12, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.,
    attn_drop_rate=0., drop_path_rate=0., norm_cfg=dict(type='LN', eps=1e-6),
    num_frames=16, tubelet_size=2, use_mean_pooling=True,
    return_feat_map=False, with_cp=False, adapter_mlp_ratio=0.25,
    total_frames=768, adapter_index=[3, 5, 7, 11])

RULES = [
    (r'blocks\.(\d+)\.adapter\.'
     r'(down_proj|dwconv|conv|up_proj)\.(weight|bias)',
     r'blocks.\1.temporal_adapter.\2.\3'),
    (r'blocks\.(\d+)\.adapter\.gamma', r'blocks.\1.temporal_adapter.gamma'),
    (r'blocks\.(\d+)\.(norm1|norm2)\.(weight|bias)', r'blocks.\1.\2.\3'),
    (r'blocks\.(\d+)\.attn\.(q_bias|v_bias|qkv\.weight|proj\.weight|'
     r'proj\.bias)', r'blocks.\1.attn.\2'),
    (r'blocks\.(\d+)\.mlp\.layers\.(0\.0|1)\.(weight|bias)',
     r'blocks.\1.mlp.layers.\2.\3'),
    (r'(patch_embed\.projection\.(weight|bias)|pos_embed|'
     r'(fc_norm|norm)\.(weight|bias))', r'\1'),
]


def matches(fixture: dict) -> bool:
    """Whether ``fixture`` holds an OpenTAD ``VisionTransformerAdapter``."""
    ctor = fixture.get('constructor') or {}
    return isinstance(ctor, dict) and \
        ctor.get('cls', ctor.get('type')) == 'VisionTransformerAdapter'


def owns_keys(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether these OpenTAD backbone keys are a ViT with AdaTAD
    adapters."""
    return any(re.fullmatch(r'blocks\.\d+\.adapter\.down_proj\.weight', k)
               for k in state_dict)


def convert_state_dict(state_dict: Mapping[str, Tensor]
                       ) -> Tuple[Dict[str, Tensor], List[str]]:
    """OpenTAD ``VisionTransformerAdapter`` keys to our ``ClipBatchedViT``
    keys (same tensors); nothing is dropped."""
    return map_keys(state_dict, RULES, where='ClipBatchedViT (AdaTAD)')


def model_cfg(constructor: dict) -> dict:
    """Our backbone computing OpenTAD's ``VisionTransformerAdapter``.

    Args:
        constructor (dict): OpenTAD's constructor arguments (``cls`` /
            ``type`` ignored).

    Returns:
        dict: ``backbone`` (a ``ClipBatchedViT`` config), ``rewire`` (None:
        AdaTAD is not rewired; ``with_cp`` gives its checkpointed blocks) and
        ``feat_len`` (``total_frames``: the detector length the localizer
        interpolates its pooled features to, as OpenTAD's post-processing
        pipeline does).

    Raises:
        ValueError: An argument we do not know, or one whose OpenTAD
            behaviour we do not reproduce.
    """
    unknown = set(constructor) - set(_DEFAULTS) - set(_IGNORED)
    if unknown:
        raise ValueError(f'VisionTransformerAdapter argument(s) '
                         f'{sorted(unknown)} are not known to the AdaTAD '
                         'converter')
    c = dict(_DEFAULTS, **{k: v for k, v in constructor.items()
                           if k not in _IGNORED})
    if c['attn_drop_rate']:
        raise ValueError(
            'attn_drop_rate > 0: OpenTAD passes it to '
            'scaled_dot_product_attention in eval mode too; not reproduced')
    if c['qk_scale'] is not None:
        raise ValueError('qk_scale: OpenTAD ignores it (its attention uses '
                         'head_dims ** -0.5); give None')
    if not c['return_feat_map']:
        raise ValueError('return_feat_map=False: a TAL backbone gives '
                         'feature maps (ours always does)')
    backbone = dict(
        type='ClipBatchedViT',
        **{k: c[k] for k in (
            'img_size', 'patch_size', 'in_channels', 'embed_dims', 'depth',
            'num_heads', 'mlp_ratio', 'qkv_bias', 'drop_rate',
            'drop_path_rate', 'norm_cfg', 'num_frames', 'tubelet_size',
            'use_mean_pooling', 'with_cp')},
        attention='sdpa',  # OpenTAD's (same function, no N x N matrix)
        adapter_blocks=list(c['adapter_index']),
        temporal_adapter=dict(
            hidden_dims=int(c['embed_dims'] * c['adapter_mlp_ratio']),
            kernel_size=3))
    return dict(backbone=backbone, rewire=None,
                feat_len=int(c['total_frames']))


def _localizer(cfg: dict):
    """A float64 ``TemporalActionLocalizer`` around our backbone, with the
    smallest detector (only its backbone and pooling path are used)."""
    from re2tal_mm.models import TemporalActionLocalizer
    dims = cfg['backbone']['embed_dims']
    model = TemporalActionLocalizer(
        backbone=cfg['backbone'], rewire=cfg['rewire'],
        feat_len=cfg['feat_len'],
        neck=dict(type='ActionFormerNeck', in_channels=dims, embed_dims=8,
                  num_levels=1, num_heads=1, window_size=3),
        head=dict(type='ActionFormerHead', num_classes=1, in_channels=8,
                  feat_channels=8, strides=(1, ),
                  regress_ranges=((0, 1e4), )))
    return model.double().eval()


def run_fixture(fixture: dict) -> dict:
    """Our outputs for an ``adatad_vit.pth`` fixture's inputs.

    Args:
        fixture (dict): Its ``constructor``, ``state_dict``, ``input`` are
            read (never its outputs).

    Returns:
        dict: ``output_chunks`` (per-clip feature maps), ``output_window``
        (the window's feature map) and ``output_pooled`` (the localizer's
        pooled, ``feat_len``-interpolated features), float64.
    """
    cfg = model_cfg(fixture['constructor'])
    model = _localizer(cfg)
    ours, _ = convert_state_dict(fixture['state_dict'])
    model.backbone.load_state_dict(ours, strict=True)
    x = fixture['input'].to(torch.float64)
    with torch.no_grad():
        chunks = model.backbone.forward_clips(x)
        window = model.backbone(x)
        pooled, _, _ = model.extract_feat(x)
    return dict(output_chunks=chunks, output_window=window,
                output_pooled=pooled[..., :cfg['feat_len']])

"""OpenTAD's Re2TAL Swin (``SwinTransformer3D_inv``) as our rewired
MMAction2 ``SwinTransformer3D``.

OpenTAD's blocks hold the attention half as ``inv_block.Fm`` and the MLP
half as ``inv_block.Gm``; ours are the upstream blocks, rewired
(``rewire=dict(mode='reversible')``), which compute the same function:
dropping ``inv_block.Fm.`` / ``inv_block.Gm.`` from the keys is the whole
mapping (the patch embedding, ``PatchMerging`` and ``norm3`` keep theirs).
Their output is ``norm3`` of the last stage, MMAction2's
``out_indices=(3, )`` before any downsampling.

Not carried over, on purpose: OpenTAD reseeds the global RNG with a
constant per block (the same drop-path mask in every iteration); ours
draws fresh masks and replays them in the recompute. ``norm_eval`` only
puts LayerNorms in eval mode, which changes nothing.
"""
import re
from typing import Any, Dict, List, Mapping, Tuple

from torch import Tensor

from .backbones import build_backbone, opentad_args, rewire_mode, run_backbone
from .keys import map_keys

CLS = 'SwinTransformer3D_inv'
ROLE = 'backbone'
#: the rewiring a converted checkpoint records (the function OpenTAD's
#: Swin computes; OpenTAD's ``inv_mode`` only picks how the backward runs)
REWIRING = dict(mode='reversible')

#: ``SwinTransformer3D_inv.__init__`` arguments with OpenTAD's defaults
DEFAULTS = dict(
    patch_size=(4, 4, 4), in_chans=3, embed_dim=96, depths=[2, 2, 6, 2],
    num_heads=[3, 6, 12, 24], window_size=(2, 7, 7), mlp_ratio=4.0,
    qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
    drop_path_rate=0.2, act_cfg=dict(type='GELU'), norm_cfg=dict(type='LN'),
    patch_norm=False, frozen_stages=-1, with_cp=False,
    inv_mode=['custom_backprop'] * 4, norm_eval=True)

#: OpenTAD argument -> MMAction2 ``SwinTransformer3D`` argument
RENAMED = dict(in_chans='in_channels')
#: OpenTAD arguments that are not MMAction2 ones (see the module doc)
NOT_PASSED = ('embed_dim', 'depths', 'num_heads', 'inv_mode', 'norm_eval')

RULES = [
    (r'layers\.(\d+)\.blocks\.(\d+)\.inv_block\.[FG]m\.(.+)',
     r'layers.\1.blocks.\2.\3'),
    (r'(patch_embed\..+|layers\.\d+\.downsample\..+|norm3\..+)', r'\1'),
]


def matches(fixture: dict) -> bool:
    """Whether ``fixture`` holds an OpenTAD ``SwinTransformer3D_inv``."""
    return (fixture.get('constructor') or {}).get('cls') == CLS


def owns_keys(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether these OpenTAD backbone keys are a ``SwinTransformer3D_inv``
    (blocks coupled as ``inv_block.Fm`` / ``inv_block.Gm``)."""
    return any(re.fullmatch(r'layers\.\d+\.blocks\.\d+\.inv_block\.Fm\.attn'
                            r'\.qkv\.weight', k) for k in state_dict)


def convert_state_dict(
        state_dict: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor],
                                                   List[str]]:
    """OpenTAD's Swin keys -> those of our ``SwinTransformer3D``."""
    return map_keys(state_dict, RULES, where='SwinTransformer3D')


def model_cfg(constructor: dict) -> Dict[str, Any]:
    """Our backbone config and rewire spec for OpenTAD's constructor
    arguments (or its config entry): ``dict(backbone=..., rewire=...)``."""
    args = opentad_args(constructor, DEFAULTS, CLS)
    if len(args['depths']) != 4:  # OpenTAD's output norm is always norm3
        raise ValueError(f'{CLS}: only 4 stages map (norm3), got depths '
                         f'{args["depths"]}')
    backbone = dict(
        type='SwinTransformer3D', pretrained=None, pretrained2d=False,
        arch=dict(embed_dims=args['embed_dim'], depths=list(args['depths']),
                  num_heads=list(args['num_heads'])),
        out_indices=(3, ), out_after_downsample=False)
    for name, value in args.items():
        if name not in NOT_PASSED:
            value = tuple(value) if name in ('patch_size', 'window_size') \
                else value
            backbone[RENAMED.get(name, name)] = value
    return dict(backbone=backbone,
                rewire=dict(REWIRING, mode=rewire_mode(args['inv_mode'])))


def run_fixture(fixture: dict) -> Dict[str, Tensor]:
    """Our Swin on the fixture's weights and input: ``{'output': ...}``."""
    model = build_backbone(model_cfg(fixture['constructor']),
                           fixture['state_dict'], convert_state_dict)
    return dict(output=run_backbone(model, fixture['input'].double())[0])

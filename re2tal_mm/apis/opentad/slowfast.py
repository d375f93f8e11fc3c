"""OpenTAD's Re2TAL SlowFast (``ResNet3dSlowFast_inv``) as our rewired
MMAction2 ``ResNet3dSlowFast``.

Every chained block (``layerN.blocks.j.inv_block.Fm``, j > 0) is our
rewired ``Bottleneck3d`` (ReLU on the branch). The first block of each
stage differs: OpenTAD computes ``relu(F(x)) + downsample(x)``, MMAction2's
block ``relu(F(x) + downsample(x))``. Their checkpoints were trained with
their form, so :func:`model_cfg` asks for it by name:
``rewire=dict(mode=..., first_block='opentad')`` (recorded in checkpoints'
``meta['re2tal_rewiring']``). Keys: ``layerN.blocks.0.Fm.*`` ->
``layerN.0.*``, ``layerN.blocks.0.downsample.*`` -> ``layerN.0.downsample.*``,
``layerN.blocks.j.inv_block.Fm.*`` -> ``layerN.j.*``; stems and lateral
connections keep theirs.

Not carried over, on purpose: OpenTAD gives no gradient to a stage's
parameters when its input needs none and updates BatchNorm statistics
twice in training; ours does neither. Their recipes set ``norm_eval=True``
(passed through) and freeze the BatchNorm parameters (the recipe's
``norm_cfg`` / optimizer settings, not the backbone's function).
"""
import re
from typing import Any, Dict, List, Mapping, Tuple

from torch import Tensor

from .backbones import build_backbone, opentad_args, rewire_mode, run_backbone
from .keys import map_keys

CLS = 'ResNet3dSlowFast_inv'
ROLE = 'backbone'
#: the rewiring a converted checkpoint records: OpenTAD's first-block form
#: (its ``inv_mode`` only picks how the backward runs)
REWIRING = dict(mode='reversible', first_block='opentad')

#: ``ResNet3dSlowFast_inv.__init__`` arguments with OpenTAD's defaults
DEFAULTS = dict(
    pretrained=None, pretrain_type='resnet_3d', resample_rate=8,
    speed_ratio=8, channel_ratio=8,
    slow_pathway=dict(type='resnet3d', depth=50, pretrained=None,
                      lateral=True, conv1_kernel=(1, 7, 7),
                      dilations=(1, 1, 1, 1), conv1_stride_t=1,
                      pool1_stride_t=1, inflate=(0, 0, 1, 1),
                      frozen_stages=-1),
    fast_pathway=dict(type='resnet3d', depth=50, pretrained=None,
                      lateral=False, base_channels=8, conv1_kernel=(5, 7, 7),
                      conv1_stride_t=1, pool1_stride_t=1, frozen_stages=-1),
    inv_mode=['custom_backprop'] * 4)

#: keys of OpenTAD's ``ResNet3dPathway`` (``ResNet3d_inv``) arguments that
#: MMAction2's ``ResNet3dPathway`` takes under the same name and meaning
PATHWAY_ARGS = {
    'type', 'depth', 'stage_blocks', 'pretrained2d', 'in_channels',
    'num_stages', 'base_channels', 'out_indices', 'spatial_strides',
    'temporal_strides', 'dilations', 'conv1_kernel', 'conv1_stride_s',
    'conv1_stride_t', 'pool1_stride_s', 'pool1_stride_t', 'with_pool2',
    'style', 'frozen_stages', 'inflate', 'inflate_style', 'conv_cfg',
    'norm_cfg', 'act_cfg', 'norm_eval', 'with_cp', 'non_local',
    'non_local_cfg', 'zero_init_residual', 'lateral', 'speed_ratio',
    'channel_ratio', 'fusion_kernel'
}

PATH = r'((?:slow|fast)_path)\.'
RULES = [
    (PATH + r'(layer\d+)\.blocks\.0\.Fm\.(.+)', r'\1.\2.0.\3'),
    (PATH + r'(layer\d+)\.blocks\.0\.downsample\.(.+)',
     r'\1.\2.0.downsample.\3'),
    (PATH + r'(layer\d+)\.blocks\.(\d+)\.inv_block\.Fm\.(.+)',
     r'\1.\2.\3.\4'),
    (PATH + r'((?:conv1|conv1_lateral|layer\d+_lateral)\..+)', r'\1.\2'),
]


def matches(fixture: dict) -> bool:
    """Whether ``fixture`` holds an OpenTAD ``ResNet3dSlowFast_inv``."""
    return (fixture.get('constructor') or {}).get('cls') == CLS


def owns_keys(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether these OpenTAD backbone keys are a ``ResNet3dSlowFast_inv``
    (stages holding ``blocks.0.Fm`` / ``blocks.j.inv_block.Fm``)."""
    return any(re.fullmatch(PATH + r'layer\d+\.blocks\.\d+\.(inv_block\.)?Fm'
                            r'\.conv1\.conv\.weight', k) for k in state_dict)


def convert_state_dict(
        state_dict: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor],
                                                   List[str]]:
    """OpenTAD's SlowFast keys -> those of our ``ResNet3dSlowFast``."""
    return map_keys(state_dict, RULES, where='ResNet3dSlowFast')


def pathway_cfg(pathway: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """MMAction2's pathway config for OpenTAD's: the same arguments (no
    ``pretrained``: the weights come converted; no ``inv_mode``)."""
    unknown = set(pathway) - PATHWAY_ARGS - {'pretrained', 'inv_mode'}
    if unknown:
        raise ValueError(f'{CLS}.{name}: arguments without an MMAction2 '
                         f'counterpart {sorted(unknown)}')
    cfg = {k: v for k, v in pathway.items() if k in PATHWAY_ARGS}
    return dict(cfg, pretrained=None)


def model_cfg(constructor: dict) -> Dict[str, Any]:
    """Our backbone config and rewire spec (OpenTAD's first-block form) for
    OpenTAD's constructor arguments (or its config entry)."""
    args = opentad_args(constructor, DEFAULTS, CLS)
    backbone = dict(
        type='ResNet3dSlowFast', pretrained=None,
        resample_rate=args['resample_rate'], speed_ratio=args['speed_ratio'],
        channel_ratio=args['channel_ratio'],
        slow_pathway=pathway_cfg(args['slow_pathway'], 'slow_pathway'),
        fast_pathway=pathway_cfg(args['fast_pathway'], 'fast_pathway'))
    return dict(backbone=backbone,
                rewire=dict(REWIRING, mode=rewire_mode(args['inv_mode'])))


def run_fixture(fixture: dict) -> Dict[str, Tensor]:
    """Our SlowFast on the fixture's weights and input:
    ``{'output_slow': ..., 'output_fast': ...}``."""
    model = build_backbone(model_cfg(fixture['constructor']),
                           fixture['state_dict'], convert_state_dict)
    slow, fast = run_backbone(model, fixture['input'].double())
    return dict(output_slow=slow, output_fast=fast)

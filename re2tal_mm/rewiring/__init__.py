"""Rewire supported video backbones into reversible networks, in place.

Importing an adapter module registers it (see :mod:`.base`).
"""
# imported for their side effect: each registers its adapter
from . import mvit, resnet2d, resnet3d, resnet_tsm, swin, vit, x3d  # noqa
from .base import ADAPTERS, register_adapter
from .rewire import (RewiringReport, apply_rewiring, find_backbones,
                     function_options, is_rewired, non_reversible_layers,
                     rewire, rewired_stages, rewiring_report, rewiring_spec,
                     rewiring_summary, supported_types, unwire)

__all__ = [
    'ADAPTERS', 'RewiringReport', 'apply_rewiring', 'find_backbones',
    'function_options', 'is_rewired', 'non_reversible_layers',
    'register_adapter', 'rewire', 'rewired_stages', 'rewiring_report',
    'rewiring_spec', 'rewiring_summary', 'supported_types', 'unwire'
]

"""Rewire supported video backbones into reversible networks, in place.

Importing an adapter module registers it (see :mod:`.base`).
"""
from . import resnet3d, swin  # noqa: F401  (register the adapters)
from . import mvit, resnet2d, resnet_tsm, vit, x3d  # noqa: F401
from .base import ADAPTERS, register_adapter
from .rewire import (apply_rewiring, find_backbones, is_rewired, rewire,
                     rewired_stages, rewiring_spec, rewiring_summary,
                     supported_types, unwire)

__all__ = [
    'ADAPTERS', 'apply_rewiring', 'find_backbones', 'is_rewired',
    'register_adapter', 'rewire', 'rewired_stages', 'rewiring_spec',
    'rewiring_summary', 'supported_types', 'unwire'
]

"""Rewire supported video backbones into reversible networks, in place."""
from .rewire import (ADAPTERS, find_backbones, is_rewired, rewire,
                     rewired_stages, rewiring_summary, supported_types, unwire)

__all__ = [
    'ADAPTERS', 'find_backbones', 'is_rewired', 'rewire', 'rewired_stages',
    'rewiring_summary', 'supported_types', 'unwire'
]

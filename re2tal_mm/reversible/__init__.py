"""Reversible coupling and its autograd Function (pure PyTorch)."""
from .coupling import (ResidualFunction, reconstruction_error, relative_error,
                       rewired_loop)
from .function import (MODES, ReversibleChainFunction, RewiredStage,
                       reversible_chain)

__all__ = [
    'MODES', 'ResidualFunction', 'ReversibleChainFunction', 'RewiredStage',
    'reconstruction_error', 'relative_error', 'reversible_chain',
    'rewired_loop'
]

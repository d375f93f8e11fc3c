"""Reversible coupling and its autograd Function (pure PyTorch)."""
from .checkpoint import checkpoint_pieces
from .coupling import (ResidualFunction, reconstruction_error, relative_error,
                       rewired_loop)
from .function import (MODES, ReversibleChainFunction, RewiredStage,
                       reversible_chain)
from .pieces import Piece, num_pieces, split_range, whole_piece

__all__ = [
    'Piece', 'MODES', 'ResidualFunction', 'ReversibleChainFunction',
    'RewiredStage', 'checkpoint_pieces', 'num_pieces',
    'reconstruction_error', 'relative_error', 'reversible_chain',
    'rewired_loop', 'split_range', 'whole_piece'
]

"""Reversible coupling and its autograd Function (pure PyTorch)."""
from .chunking import Chunk, num_chunks, split_range, whole_chunk
from .coupling import (ResidualFunction, reconstruction_error, relative_error,
                       rewired_loop)
from .function import (MODES, ReversibleChainFunction, RewiredStage,
                       reversible_chain)

__all__ = [
    'Chunk', 'MODES', 'ResidualFunction', 'ReversibleChainFunction',
    'RewiredStage', 'num_chunks', 'reconstruction_error', 'relative_error',
    'reversible_chain', 'rewired_loop', 'split_range', 'whole_chunk'
]

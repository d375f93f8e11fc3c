"""Runner integration: the rewiring hook and the DDP model wrapper."""
from .reversible_ddp import ReversibleDistributedDataParallel
from .rewire_hook import RewireBackboneHook

__all__ = ['RewireBackboneHook', 'ReversibleDistributedDataParallel']

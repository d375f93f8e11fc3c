"""Runner integration: the rewiring hooks and the DDP model wrapper."""
from .reversible_ddp import ReversibleDistributedDataParallel
from .rewire_hook import RewireBackboneHook
from .rewiring_meta import (META_KEY, RewiringMetaHook, checkpoint_rewiring,
                            rewiring_of_config)

__all__ = [
    'META_KEY', 'RewireBackboneHook', 'ReversibleDistributedDataParallel',
    'RewiringMetaHook', 'checkpoint_rewiring', 'rewiring_of_config'
]

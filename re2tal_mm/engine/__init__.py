"""Runner integration: the rewiring hooks, the memory probe and inversion
monitor hooks, the DDP model wrapper and the ``data_root`` runner."""
from .data_root import DataRootRunner, apply_data_root
from .inversion_monitor import InversionMonitorHook
from .memory_probe import ReversibleMemoryProbeHook
from .reversible_ddp import ReversibleDistributedDataParallel
from .rewire_hook import RewireBackboneHook
from .rewiring_meta import (META_KEY, RewiringMetaHook, checkpoint_rewiring,
                            rewiring_of_config)

__all__ = [
    'DataRootRunner', 'apply_data_root', 'InversionMonitorHook', 'META_KEY',
    'RewireBackboneHook', 'ReversibleDistributedDataParallel',
    'ReversibleMemoryProbeHook', 'RewiringMetaHook', 'checkpoint_rewiring',
    'rewiring_of_config'
]

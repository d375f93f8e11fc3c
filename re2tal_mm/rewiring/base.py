"""What an adapter is, and the list ``rewire`` consults.

An adapter is a small class describing one backbone family:

* ``backbone_types``: the classes it handles;
* ``options``: its keyword options with their defaults (passed by ``rewire``
  and the hook, e.g. ``attention_chunk``);
* ``functions_per_block``: residual functions one block contributes;
* ``stages(backbone)``: yields ``(name, stage_module, num_functions,
  total_blocks)``, with ``stage_module=None`` for a stage left as it is;
* ``make_forward(stage_module, stage, **options)``: the replacement
  ``forward`` of ``stage_module`` that runs its chain through ``stage``.

Decorate it with :func:`register_adapter`; ``rewire``, the hook and the model
wrapper pick it up without further changes.
"""
from typing import List

ADAPTERS: List[type] = []


def register_adapter(adapter: type) -> type:
    """Class decorator adding ``adapter`` to :data:`ADAPTERS`."""
    for attr in ('backbone_types', 'options', 'functions_per_block', 'stages',
                 'make_forward'):
        if not hasattr(adapter, attr):
            raise TypeError(f'{adapter.__name__} lacks {attr!r}')
    if adapter not in ADAPTERS:
        ADAPTERS.append(adapter)
    return adapter

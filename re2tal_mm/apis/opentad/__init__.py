"""OpenTAD (the Re2TAL authors' codebase) models and checkpoints, here.

One module per OpenTAD model kind (``swin``, ``slowfast``, ``adatad``,
``actionformer``, ``tridet``) maps its state dict to ours
(``convert_state_dict``), gives the config of our model that computes
OpenTAD's function on those weights (``model_cfg``), and runs a reference
fixture of ``../shared/reference/opentad/`` through our model
(``run_fixture``). :mod:`.checkpoint` converts whole OpenTAD checkpoints and
:mod:`.parity` compares our outputs with a fixture's.
"""
import importlib
from types import ModuleType
from typing import List

#: the kind modules, backbones first (a TAL checkpoint holds one of each)
KIND_NAMES = ('swin', 'slowfast', 'adatad', 'actionformer', 'tridet')


def kinds() -> List[ModuleType]:
    """The kind modules, in :data:`KIND_NAMES` order."""
    return [importlib.import_module(f'{__name__}.{name}')
            for name in KIND_NAMES]


def kind_of(fixture: dict) -> ModuleType:
    """The kind module whose ``matches`` recognises ``fixture``.

    Raises:
        ValueError: No kind (or more than one) recognises it.
    """
    found = [k for k in kinds() if k.matches(fixture)]
    if len(found) != 1:
        what = fixture.get('constructor', fixture.get('config', {}))
        what = what.get('cls', what.get('type')) if isinstance(
            what, dict) else None
        raise ValueError(
            f'{"no" if not found else "more than one"} OpenTAD model kind '
            f'recognises this fixture (model {what!r}, entries '
            f'{sorted(fixture)}); known kinds: {", ".join(KIND_NAMES)}')
    return found[0]

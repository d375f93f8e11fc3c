"""The adapter protocol, and the list ``rewire`` consults.

An adapter describes one backbone family (see ``docs/backbones.md``):
where its residual chains are (:meth:`Adapter.stages`) and how a chain runs
(:meth:`Adapter.make_forward`). ``rewire`` replaces the ``forward`` of each
stage's module (and makes the other chained blocks pass their input
through); :meth:`Adapter.prepare` may change more of the backbone and
returns its own undo, so ``unwire`` is the same for every adapter.

Subclass :class:`Adapter` and decorate it with :func:`register_adapter`;
``rewire``, the hook and the model wrapper pick it up without further
changes.
"""
from abc import ABC, abstractmethod
from typing import (Any, Callable, ClassVar, Dict, Iterator, List, NamedTuple,
                    Optional, Sequence, Tuple)

from torch import nn

from ..reversible import RewiredStage

# what a preset of ``rewire(..., memory=...)`` trades: 'fast' stores what
# is cheap to keep, 'balanced' (the default) the adapters' defaults,
# 'floor' as little as the chain allows (piecewise recompute, non-reversible
# layers recomputed or checkpointed)
MEMORY = ('fast', 'balanced', 'floor')

# options renamed when the vocabulary was unified: old name -> new name
RENAMED = dict(chunks='pieces', chunk_mib='piece_mib',
               attention_chunk='windows_per_call')
REMOVED = dict(head_chunk="use attention='sdpa' (no N x N matrix) and "
               'pieces (head groups) instead')

# the options that change the function computed, with their defaults: two
# specs compute the same function when these agree (every other option only
# trades memory for time)
FUNCTION_OPTIONS = dict(first_block='mmaction')

# the options of the transformers' ``memory='floor'`` presets (Swin, ViT,
# MViT) for piecewise recompute (the ResNet family's: ``rewiring/resnet.py``);
# pieces of 1 MiB: Swin-T 32f peaks 253 MiB against 246 with 0.5 MiB (and
# 328 with 1.5), one step 1.47x plain against 1.59x (every piece of window
# attention rebuilds the relative position bias); ViT-B 375 MiB with both
FLOOR_PIECES = dict(pieces=8, piece_mib=1)

Undo = Callable[[], None]


class StageSpec(NamedTuple):
    """Where one stage's chain is.

    Args:
        name (str): Dotted name of the stage in its backbone.
        module (nn.Module, optional): The module whose ``forward`` runs the
            chain; None for a stage left as it is.
        num_functions (int): Residual functions of the chain.
        blocks (int): Blocks of the stage (chained or not).
        bounds (tuple, optional): ``(start, stop)`` of the chained blocks in
            the stage's block list. Defaults to None (all of them).
        passthrough (Sequence[nn.Module]): Chained blocks whose ``forward``
            becomes :meth:`Adapter.passthrough` (the chain runs in
            ``module``). Defaults to ``()``.
        options (dict, optional): Per-stage options added to the adapter's
            (e.g. whether a layer after the stage is fused into it).
            Defaults to None.
    """
    name: str
    module: Optional[nn.Module]
    num_functions: int
    blocks: int
    bounds: Optional[Tuple[int, int]] = None
    passthrough: Sequence[nn.Module] = ()
    options: Optional[Dict[str, Any]] = None


class Adapter(ABC):
    """Base of the adapters: one backbone family each.

    Class attributes:

    * ``backbone_types``: the classes it handles;
    * ``options``: its keyword options with their defaults (the
      ``'balanced'`` preset);
    * ``choices``: for options taking one of a few values, those values
      (``rewire`` refuses any other);
    * ``presets``: per :data:`MEMORY` preset, the options it overrides.
    """

    backbone_types: ClassVar[Tuple[type, ...]] = ()
    options: ClassVar[Dict[str, Any]] = {}
    choices: ClassVar[Dict[str, Tuple[Any, ...]]] = {}
    presets: ClassVar[Dict[str, Dict[str, Any]]] = {}

    @classmethod
    @abstractmethod
    def stages(cls, backbone: nn.Module, **options) -> Iterator[StageSpec]:
        """Yield a :class:`StageSpec` per stage, in forward order."""

    @classmethod
    @abstractmethod
    def make_forward(cls, spec: StageSpec, stage: RewiredStage) -> Callable:
        """The replacement ``forward`` of ``spec.module``; it runs the chain
        through ``stage`` (options in ``stage.options``, block range in
        ``stage.bounds``)."""

    @classmethod
    def prepare(cls, backbone: nn.Module, mode: str,
                **options) -> Optional[Undo]:
        """Apply options that act outside the chains (patched
        non-reversible layers, frozen parameters); returns what undoes it.
        Defaults to doing nothing."""
        return None

    @staticmethod
    def passthrough(x, *args):
        """``forward`` of a chained block whose chain runs elsewhere."""
        return x

    @classmethod
    def non_reversible(cls, backbone: nn.Module,
                       stages: Sequence[RewiredStage]) -> Iterator:
        """``(name, module, policy)`` of the layers outside the chains
        (policy ``'kept'``, ``'checkpoint'``, ``'recompute'`` or
        ``'frozen'``). Defaults to none listed."""
        return iter(())


def patch_forwards(patches: Sequence[Tuple[nn.Module, Callable]]) -> Undo:
    """Give each module its replacement ``forward``; returns the undo."""
    patches = list(patches)
    for module, forward in patches:
        module.forward = forward

    def undo():
        for module, _ in patches:
            module.__dict__.pop('forward', None)
    return undo


ADAPTERS: List[type] = []


def register_adapter(adapter: type) -> type:
    """Class decorator adding ``adapter`` to :data:`ADAPTERS`."""
    if not (isinstance(adapter, type) and issubclass(adapter, Adapter)):
        raise TypeError(f'{adapter!r} is not a subclass of Adapter')
    if getattr(adapter, '__abstractmethods__', None):
        missing = ', '.join(sorted(adapter.__abstractmethods__))
        raise TypeError(f'{adapter.__name__} lacks {missing}')
    if not adapter.backbone_types:
        raise TypeError(f'{adapter.__name__} names no backbone_types')
    undeclared = set(adapter.choices) - set(adapter.options)
    if undeclared:
        raise TypeError(f'{adapter.__name__}: choices for undeclared options '
                        f'{sorted(undeclared)}')
    unknown = set(adapter.presets) - set(MEMORY)
    if unknown:
        raise TypeError(f'{adapter.__name__}: unknown presets '
                        f'{sorted(unknown)}; known: {MEMORY}')
    if adapter not in ADAPTERS:
        ADAPTERS.append(adapter)
    return adapter


def adapter_options(adapter: type, memory: str,
                    options: Dict[str, Any]) -> Dict[str, Any]:
    """The options ``adapter`` runs with: its defaults, then the preset's,
    then those given (the ones it declares)."""
    merged = dict(adapter.options)
    merged.update(adapter.presets.get(memory, {}))
    merged.update({k: v for k, v in options.items() if k in adapter.options})
    return merged

"""``rewire`` / ``unwire`` / ``is_rewired``: convert backbones in place.

Only ``forward`` methods are replaced, through instance attributes: the
module running each stage's chain and the chained blocks it runs; an
adapter's ``prepare`` may patch more and returns its undo. Parameters,
buffers and state_dict keys never change; ``unwire`` deletes the attributes
and runs the undos, restoring the class forwards exactly.

``rewire`` records on each backbone what it did; :func:`rewiring_report`
reads it back as a :class:`RewiringReport` (stages, parameters frozen,
layers left non-reversible), so no caller compares parameters around the
call.
"""
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from torch import nn

from ..reversible import MODES, RewiredStage
from .base import (ADAPTERS, FUNCTION_OPTIONS, MEMORY, REMOVED, RENAMED,
                   adapter_options)

# on each backbone: [(stage, module, passthrough modules)], the summary rows,
# what rewire() was called with (dict(mode=..., memory=..., **options)), the
# names (in the backbone) of the parameters it froze and the undo functions
# of the adapters' ``prepare``
STAGES_ATTR = '_re2tal_stages'
SUMMARY_ATTR = '_re2tal_summary'
SPEC_ATTR = '_re2tal_spec'
FROZEN_ATTR = '_re2tal_frozen'
UNDO_ATTR = '_re2tal_undo'


def supported_types() -> List[type]:
    """Backbone classes some adapter can rewire."""
    return [t for a in ADAPTERS for t in a.backbone_types]


def find_backbones(module: nn.Module) -> List[tuple]:
    """``(name, backbone, adapter)`` for every supported backbone inside.

    Containers such as ``ResNet3dSlowFast`` are not backbones themselves:
    each of their pathways (``ResNet3dPathway``) is found on its own.
    """
    found = []
    for name, m in module.named_modules():
        matches = [a for a in ADAPTERS if isinstance(m, a.backbone_types)]
        if matches:  # the most specific adapter (e.g. ResNetTSM over ResNet)
            found.append((name, m, min(matches, key=partial(mro_distance, m))))
    return found


def mro_distance(module: nn.Module, adapter) -> int:
    """How far up ``module``'s MRO the closest type of ``adapter`` is."""
    mro = type(module).__mro__
    return min(mro.index(t) for t in adapter.backbone_types if t in mro)


def is_rewired(module: nn.Module) -> bool:
    """Whether any backbone inside ``module`` is rewired."""
    return any(hasattr(m, STAGES_ATTR) for m in module.modules())


def rewired_stages(module: nn.Module) -> List[RewiredStage]:
    """All :class:`RewiredStage` records inside ``module``."""
    stages = []
    for m in module.modules():
        stages.extend(r[0] for r in getattr(m, STAGES_ATTR, []))
    return stages


def trainable_names(module: nn.Module) -> Set[str]:
    """Names of the parameters of ``module`` that need gradients."""
    return {n for n, p in module.named_parameters() if p.requires_grad}


def check_options(options: Dict[str, Any]) -> None:
    """Refuse options no adapter declares (naming renamed ones) and values
    outside an option's declared choices."""
    for old, new in RENAMED.items():
        if old in options:
            raise TypeError(f'rewire option {old!r} is now called {new!r}')
    for old, hint in REMOVED.items():
        if old in options:
            raise TypeError(f'rewire option {old!r} was removed: {hint}')
    known = {k for a in ADAPTERS for k in a.options}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f'unknown rewire options {sorted(unknown)}; '
                        f'known: {sorted(known)}')
    for adapter in ADAPTERS:
        for name, allowed in adapter.choices.items():
            if name in options and options[name] not in allowed:
                raise ValueError(f'rewire option {name}={options[name]!r}: '
                                 f'must be one of {allowed}')


def function_options(spec: Optional[Dict]) -> Optional[Dict]:
    """The options of a :func:`rewiring_spec` that decide the function
    computed (:data:`~.base.FUNCTION_OPTIONS`, defaults filled in); None
    for None (not rewired)."""
    if spec is None:
        return None
    return {k: spec.get(k, default) for k, default in FUNCTION_OPTIONS.items()}


def rewire(module: nn.Module, mode: str = 'reversible',
           memory: str = 'balanced', **options) -> nn.Module:
    """Rewire every supported backbone in ``module`` in place.

    Args:
        module (nn.Module): A bare backbone, a recognizer, a localizer or any
            model holding supported backbones.
        mode (str): ``'reversible'`` (memory-free backprop) or
            ``'autograd'`` (same function, ordinary autograd).
            Defaults to ``'reversible'``.
        memory (str): A preset of the adapters' options: ``'fast'``,
            ``'balanced'`` or ``'floor'`` (see ``docs/backbones.md``); none
            changes the function computed. Defaults to ``'balanced'``.
        **options: Adapter options, overriding the preset's, e.g.
            ``pieces=4``.

    Returns:
        nn.Module: ``module`` itself.
    """
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    if memory not in MEMORY:
        raise ValueError(f'memory must be one of {MEMORY}, got {memory!r}')
    backbones = find_backbones(module)
    if not backbones:
        names = ', '.join(t.__name__ for t in supported_types())
        raise TypeError(f'{type(module).__name__} holds no supported '
                        f'backbone; supported types: {names}')
    check_options(options)
    if is_rewired(module):
        unwire(module)
    for name, backbone, adapter in backbones:
        kwargs = adapter_options(adapter, memory, options)
        trainable = trainable_names(backbone)
        undo = adapter.prepare(backbone, mode, **kwargs)
        frozen = tuple(sorted(trainable - trainable_names(backbone)))
        records, summary = [], []
        for spec in adapter.stages(backbone, **kwargs):
            full = dotted(name, spec.name)
            n_rev = 0 if spec.module is None else spec.blocks \
                if spec.bounds is None else spec.bounds[1] - spec.bounds[0]
            summary.append(dict(stage=spec.name, functions=spec.num_functions,
                                blocks=spec.blocks,
                                reversible_blocks=n_rev))
            if spec.module is None:
                continue
            stage = RewiredStage(full, spec.num_functions, mode,
                                 bounds=spec.bounds,
                                 options={**kwargs, **(spec.options or {})})
            spec.module.forward = adapter.make_forward(spec, stage)
            for m in spec.passthrough:
                m.forward = adapter.passthrough
            records.append((stage, spec.module, tuple(spec.passthrough)))
        setattr(backbone, STAGES_ATTR, records)
        setattr(backbone, SUMMARY_ATTR, summary)
        # as called (the default preset left out, as in older checkpoints)
        preset = {} if memory == 'balanced' else dict(memory=memory)
        setattr(backbone, SPEC_ATTR, dict(mode=mode, **preset, **options))
        setattr(backbone, FROZEN_ATTR, frozen)
        setattr(backbone, UNDO_ATTR, undo)
    return module


def rewiring_spec(module: nn.Module) -> Optional[Dict]:
    """How the backbones in ``module`` were rewired: ``dict(mode=...,
    [memory=...,] **options)`` as given to :func:`rewire`, or None when not
    rewired.

    The spec travels in checkpoints (``meta['re2tal_rewiring']``) and
    ``apply_rewiring(model, spec)`` rebuilds the same function from it.
    """
    for m in module.modules():
        spec = getattr(m, SPEC_ATTR, None)
        if spec is not None:
            return dict(spec)
    return None


def apply_rewiring(module: nn.Module, spec: Optional[Dict]) -> nn.Module:
    """Make ``module`` rewired as ``spec`` says (see :func:`rewiring_spec`):
    rewired with its mode and options, or un-rewired when ``spec`` is None.
    """
    if spec is None:
        return unwire(module)
    spec = dict(spec)
    return rewire(module, spec.pop('mode', 'reversible'),
                  spec.pop('memory', 'balanced'), **spec)


def unwire(module: nn.Module) -> nn.Module:
    """Restore the original forward of every rewired stage in ``module``
    and undo what the adapters' ``prepare`` did."""
    for m in module.modules():
        for _, stage_module, passthrough in getattr(m, STAGES_ATTR, []):
            for patched in (stage_module, *passthrough):
                patched.__dict__.pop('forward', None)
        undo = m.__dict__.pop(UNDO_ATTR, None)
        if undo is not None:
            undo()
        for attr in (STAGES_ATTR, SUMMARY_ATTR, SPEC_ATTR, FROZEN_ATTR):
            m.__dict__.pop(attr, None)
    return module


def dotted(prefix: str, name: str) -> str:
    """``name`` inside the module named ``prefix`` ('' for the root)."""
    return f'{prefix}.{name}' if prefix else name


def recorded(module: nn.Module, attr: str) -> Iterator[Tuple[str, Any]]:
    """``(backbone name in module, item)`` for every item ``rewire``
    recorded under ``attr`` on the backbones in ``module``."""
    for prefix, m in module.named_modules():
        for item in getattr(m, attr, ()):
            yield prefix, item


def rewiring_summary(module: nn.Module) -> List[Dict]:
    """Per-stage summary (functions, blocks, reversible blocks) of rewiring,
    stages named in ``module``."""
    return [dict(row, stage=dotted(prefix, row['stage']))
            for prefix, row in recorded(module, SUMMARY_ATTR)]


def format_summary(rows: List[Dict]) -> str:
    """One line per :func:`rewiring_summary` row plus the share of blocks
    made reversible."""

    def plural(n: int, word: str) -> str:
        return f'{n} {word}' + ('' if n == 1 else 's')

    lines = [f'  {r["stage"]}: {plural(r["functions"], "function")}, '
             f'{r["reversible_blocks"]}/{plural(r["blocks"], "block")} '
             'reversible' for r in rows]
    total = sum(r['blocks'] for r in rows)
    rev = sum(r['reversible_blocks'] for r in rows)
    share = 100.0 * rev / max(total, 1)
    stages = sum(r['functions'] > 0 for r in rows)
    lines.append(f'  {rev}/{plural(total, "block")} ({share:.1f}%) '
                 f'reversible in {plural(stages, "stage")}')
    return '\n'.join(lines)


def non_reversible_layers(module: nn.Module) -> Iterator[tuple]:
    """``(name, layer, policy)`` of every layer outside the reversible
    chains of the backbones in ``module`` (names in ``module``), for the
    adapters that list them (:meth:`~.base.Adapter.non_reversible`)."""
    for name, backbone, adapter in find_backbones(module):
        for sub, layer, policy in adapter.non_reversible(
                backbone, rewired_stages(backbone)):
            yield dotted(name, sub), layer, policy


@dataclass(frozen=True)
class RewiringReport:
    """What :func:`rewire` did to the backbones of a model.

    Args:
        spec (dict): How they were rewired (:func:`rewiring_spec`).
        stages (tuple[dict]): One row per stage (functions, blocks,
            reversible blocks), as :func:`rewiring_summary` gives them.
        frozen (tuple[str]): Names of the parameters ``rewire`` froze (an
            option such as Swin's ``freeze_patch_embed``); freezing done
            before ``rewire`` is not listed.
        non_reversible (tuple[tuple[str, str]]): ``(name, policy)`` of the
            layers left outside the reversible chains, for the adapters
            that list them; policy ``'kept'``, ``'checkpoint'``,
            ``'recompute'`` or ``'frozen'``.
    """
    spec: Dict[str, Any]
    stages: Tuple[Dict[str, Any], ...]
    frozen: Tuple[str, ...]
    non_reversible: Tuple[Tuple[str, str], ...]

    def format(self) -> str:
        """The report as log lines: stages, frozen parameters and the
        non-reversible layers with their policy."""
        lines = [format_summary(list(self.stages))]
        if self.frozen:
            shown = ', '.join(self.frozen[:4]) + \
                (', ...' if len(self.frozen) > 4 else '')
            lines.append(f'  frozen by the rewiring: {len(self.frozen)} '
                         f'parameters ({shown})')
        if self.non_reversible:
            lines.append('  non-reversible: ' + ', '.join(
                f'{name} ({policy})' for name, policy in self.non_reversible))
        return '\n'.join(lines)


def rewiring_report(module: nn.Module) -> Optional[RewiringReport]:
    """The :class:`RewiringReport` of the backbones in ``module``; None
    when none is rewired.

    Stage, parameter and layer names are those in ``module``; the policies
    of the non-reversible layers are read from their adapters now (a
    parameter frozen after ``rewire`` shows).
    """
    spec = rewiring_spec(module)
    if spec is None:
        return None
    return RewiringReport(
        spec=spec, stages=tuple(rewiring_summary(module)),
        frozen=tuple(dotted(prefix, name)
                     for prefix, name in recorded(module, FROZEN_ATTR)),
        non_reversible=tuple((name, policy) for name, _, policy
                             in non_reversible_layers(module)))

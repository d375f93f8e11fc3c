"""``rewire`` / ``unwire`` / ``is_rewired``: convert backbones in place.

Only the ``forward`` of each stage-level module is replaced, through an
instance attribute; parameters, buffers and state_dict keys never change and
``unwire`` deletes the attribute, restoring the class forward exactly.
"""
from functools import partial
from typing import Dict, List, Optional

from torch import nn

from ..reversible import MODES, RewiredStage
from .base import ADAPTERS
STAGES_ATTR = '_re2tal_stages'
SUMMARY_ATTR = '_re2tal_summary'
# what rewire() was called with: dict(mode=..., **options)
SPEC_ATTR = '_re2tal_spec'
# set by adapters' ``prepare``: a module whose forward was replaced, a stage
# with the non-reversible layer after it fused in, parameters frozen
PATCHED_ATTR = '_re2tal_patched'
FUSED_ATTR = '_re2tal_fused_merging'
FROZEN_ATTR = '_re2tal_frozen'


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
        stages.extend(s for s, _ in getattr(m, STAGES_ATTR, []))
    return stages


def rewire(module: nn.Module, mode: str = 'reversible',
           **options) -> nn.Module:
    """Rewire every supported backbone in ``module`` in place.

    Args:
        module (nn.Module): A bare backbone, a recognizer, a localizer or any
            model holding supported backbones.
        mode (str): ``'reversible'`` (memory-free backprop) or
            ``'autograd'`` (same function, ordinary autograd).
        **options: Adapter options, e.g. ``attention_chunk`` for Swin.

    Returns:
        nn.Module: ``module`` itself.
    """
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    backbones = find_backbones(module)
    if not backbones:
        names = ', '.join(t.__name__ for t in supported_types())
        raise TypeError(f'{type(module).__name__} holds no supported '
                        f'backbone; supported types: {names}')
    known = {k for a in ADAPTERS for k in a.options}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f'unknown rewire options {sorted(unknown)}; '
                        f'known: {sorted(known)}')
    if is_rewired(module):
        unwire(module)
    for name, backbone, adapter in backbones:
        records, summary = [], []
        kwargs = {k: options[k] for k in options if k in adapter.options}
        if hasattr(adapter, 'prepare'):  # options acting on the backbone
            adapter.prepare(backbone, **kwargs)
        for stage_name, stage_module, n_fn, n_blocks in \
                adapter.stages(backbone):
            full = f'{name}.{stage_name}' if name else stage_name
            if stage_module is None:
                summary.append(dict(stage=full, functions=0,
                                    blocks=n_blocks, reversible_blocks=0))
                continue
            stage = RewiredStage(full, n_fn, mode)
            stage_module.forward = adapter.make_forward(
                stage_module, stage, **kwargs)
            records.append((stage, stage_module))
            n_rev = n_fn // adapter.functions_per_block
            summary.append(dict(stage=full, functions=n_fn,
                                blocks=n_blocks, reversible_blocks=n_rev))
        setattr(backbone, STAGES_ATTR, records)
        setattr(backbone, SUMMARY_ATTR, summary)
        setattr(backbone, SPEC_ATTR, dict(mode=mode, **options))
    return module


def rewiring_spec(module: nn.Module) -> Optional[Dict]:
    """How the backbones in ``module`` were rewired: ``dict(mode=...,
    **options)`` as given to :func:`rewire`, or None when not rewired.

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
    return rewire(module, spec.pop('mode', 'reversible'), **spec)


def unwire(module: nn.Module) -> nn.Module:
    """Restore the original forward of every rewired stage in ``module``
    (and undo what adapters' ``prepare`` did: patched non-reversible
    layers, frozen parameters)."""
    for m in module.modules():
        for _, stage_module in getattr(m, STAGES_ATTR, []):
            stage_module.__dict__.pop('forward', None)
        if m.__dict__.pop(PATCHED_ATTR, False):
            m.__dict__.pop('forward', None)
        m.__dict__.pop(FUSED_ATTR, None)
        for p in m.__dict__.pop(FROZEN_ATTR, []):
            p.requires_grad_(True)
        for attr in (STAGES_ATTR, SUMMARY_ATTR, SPEC_ATTR):
            if attr in m.__dict__:
                delattr(m, attr)
    return module


def rewiring_summary(module: nn.Module) -> List[Dict]:
    """Per-stage summary (functions, blocks, reversible blocks) of rewiring."""
    rows = []
    for m in module.modules():
        rows.extend(getattr(m, SUMMARY_ATTR, []))
    return rows

"""The rewiring spec a model runs with: where it is recorded, where it
comes from, when two specs compute the same function.

A spec is ``dict(mode=..., **options)`` (:func:`~re2tal_mm.rewiring.\
rewiring_spec` of a model), None when the backbone is not rewired, or
:data:`UNRECORDED` when a checkpoint does not say. Checkpoints carry it in
``meta[META_KEY]`` (written by the engine's hooks); the paths that build a
model outside a Runner (``re2tal_mm.apis``) choose theirs with
:func:`choose_rewiring`. Reading configs, it also owns
:func:`config_type_name`, the class name a config's ``type`` gives.
"""
from typing import Any, Optional, Tuple, Union

from mmengine.config import Config

from .rewire import function_options

META_KEY = 're2tal_rewiring'
#: ``meta[META_KEY]`` is absent: the checkpoint was saved without the hook
#: (an older checkpoint, or a model zoo recognizer)
UNRECORDED = 'unrecorded'


def describe(spec: Optional[dict]) -> str:
    """``'rewired reversible (memory='floor')'``, ``'not rewired'`` ..."""
    if spec is None:
        return 'not rewired'
    if spec == UNRECORDED:
        return 'not recorded'
    spec = dict(spec)
    mode = spec.pop('mode', 'reversible')
    options = ', '.join(f'{k}={v!r}' for k, v in sorted(spec.items()))
    return f'rewired {mode}' + (f' ({options})' if options else '')


def checkpoint_rewiring(checkpoint: dict) -> Union[dict, None, str]:
    """The spec a checkpoint records: a dict, None (trained un-rewired) or
    :data:`UNRECORDED`."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or META_KEY not in meta:
        return UNRECORDED
    return meta[META_KEY]


def config_type_name(cfg: Any) -> str:
    """The class name a config entry's ``type`` gives: ``'Foo'`` for
    ``type='Foo'``, ``type='mmaction.Foo'`` (a scoped name) or
    ``type=Foo`` (the class).

    Args:
        cfg (dict | str | type | object): A config entry (its ``type``),
            the ``type`` itself, or a built object (its class).

    Returns:
        str: The name, without the registry scope; ``''`` for an entry
        without a type.
    """
    kind = cfg.get('type') if isinstance(cfg, dict) else cfg
    if kind is None:
        return ''
    if isinstance(kind, str):
        return kind.rsplit('.', 1)[-1]
    return (kind if isinstance(kind, type) else type(kind)).__name__


def rewiring_of_config(cfg: Config) -> Tuple[Optional[dict], str]:
    """What ``cfg`` rewires and where it says so: the model's ``rewire``
    entry (construction time), else a ``RewireBackboneHook`` in
    ``custom_hooks``; ``(None, '')`` when it asks for none."""
    model_spec = cfg.get('model', {}).get('rewire')
    if model_spec:
        return dict(model_spec), 'the model config (model.rewire)'
    for hook in cfg.get('custom_hooks', None) or []:
        if config_type_name(hook) == 'RewireBackboneHook':
            spec = dict(mode=hook.get('mode', 'reversible'),
                        **(hook.get('rewire_options') or {}))
            return spec, 'the RewireBackboneHook of the config'
    return None, ''


def same_function(a: Optional[dict], b: Optional[dict]) -> bool:
    """Whether two specs compute the same function: rewirings agreeing in
    the options that decide the function (``first_block``, see
    :func:`~re2tal_mm.rewiring.function_options`) are one function
    (``'reversible'`` or ``'autograd'``, whatever the memory options), the
    un-rewired network another."""
    return function_options(a) == function_options(b)


def choose_rewiring(cfg: Config, trained=UNRECORDED, override=None
                    ) -> Tuple[Optional[dict], str]:
    """The rewiring to run a model of ``cfg`` with, and why.

    Args:
        cfg (Config): The model's config.
        trained (dict | None | str): What the checkpoint records
            (:func:`checkpoint_rewiring`). Defaults to :data:`UNRECORDED`.
        override (dict | bool, optional): An explicit choice: a spec, or
            False to run the backbone un-rewired. Defaults to None.

    Returns:
        tuple: ``(spec or None, where it came from)``. The order is: the
        explicit choice, then the checkpoint's record, then the config
        (``model.rewire``, else its ``RewireBackboneHook``).
    """
    if override is not None:
        return (dict(override) if override else None), 'explicit argument'
    if trained != UNRECORDED:
        return trained, 'checkpoint meta'
    spec, source = rewiring_of_config(cfg)
    return spec, source or 'the config (no rewiring in it)'

"""The rewiring a model was trained with travels in its checkpoints.

:class:`RewiringMetaHook` writes ``meta['re2tal_rewiring']`` (the
:func:`~re2tal_mm.rewiring.rewiring_spec` of the model, None when it was not
rewired) into every checkpoint and, when a checkpoint is loaded, warns loudly
if it was trained as another function than the model about to run it.
:func:`rewiring_of_config` reads what a config asks for, for the paths that
build a model outside a Runner (``re2tal_mm.apis``).
"""
from typing import Optional, Tuple, Union

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from torch import nn

from mmaction.registry import HOOKS
from ..rewiring import function_options, rewiring_spec

META_KEY = 're2tal_rewiring'
#: ``meta[META_KEY]`` is absent: the checkpoint was saved without the hook
#: (an older checkpoint, or a model zoo recognizer)
UNRECORDED = 'unrecorded'


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a model wrapper (DDP and friends)."""
    return model.module if is_model_wrapper(model) else model


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


def rewiring_of_config(cfg: Config) -> Tuple[Optional[dict], str]:
    """What ``cfg`` rewires and where it says so: the model's ``rewire``
    entry (construction time), else a ``RewireBackboneHook`` in
    ``custom_hooks``; ``(None, '')`` when it asks for none."""
    model_spec = cfg.get('model', {}).get('rewire')
    if model_spec:
        return dict(model_spec), 'the model config (model.rewire)'
    for hook in cfg.get('custom_hooks', None) or []:
        kind = hook.get('type')
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name.split('.')[-1] == 'RewireBackboneHook':
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


@HOOKS.register_module()
class RewiringMetaHook(Hook):
    """Record the model's rewiring in checkpoints; check it on load.

    Put it in ``custom_hooks`` of configs whose model is rewired at
    construction (``TemporalActionLocalizer(rewire=...)``);
    :class:`RewireBackboneHook` does the same on its own.

    Every checkpoint gets ``meta['re2tal_rewiring']``: ``dict(mode=...,
    **options)`` or None (not rewired). A loaded checkpoint that records
    another function than the model's (trained rewired, run un-rewired, or
    the other way round) gets a warning naming the checkpoint and the fix.
    """

    priority = 'HIGH'

    def before_run(self, runner) -> None:
        spec = rewiring_spec(unwrap(runner.model))
        MMLogger.get_current_instance().info(
            f'{type(self).__name__}: the backbone is {describe(spec)}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[META_KEY] = rewiring_spec(
            unwrap(runner.model))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        trained = checkpoint_rewiring(checkpoint)
        model_spec = rewiring_spec(unwrap(runner.model))
        if trained == UNRECORDED or same_function(trained, model_spec):
            return
        if trained is not None:
            fix = (f'add `rewire={trained!r}` to the model config (or a '
                   'RewireBackboneHook) to run it as it was trained')
        else:
            fix = ('fine when fine-tuning from it; to evaluate it as it was '
                   'trained, remove the rewiring from the config')
        MMLogger.get_current_instance().warning(
            f'{"!" * 8} the loaded checkpoint was trained '
            f'{describe(trained)}, but this model is {describe(model_spec)}:'
            f' they compute different functions, so its outputs differ from '
            f'those seen in training. {fix}.')


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

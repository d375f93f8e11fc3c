"""The rewiring a model was trained with travels in its checkpoints.

:class:`RewiringMetaHook` writes ``meta['re2tal_rewiring']`` (the
:func:`~re2tal_mm.rewiring.rewiring_spec` of the model, None when it was not
rewired) into every checkpoint and, when a checkpoint is loaded, warns loudly
if it was trained as another function than the model about to run it. The
spec policy it applies (:func:`rewiring_of_config`, :func:`choose_rewiring`,
...) lives in :mod:`re2tal_mm.rewiring.spec`, re-exported here.
"""
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from torch import nn

from mmaction.registry import HOOKS
from ..rewiring import rewiring_spec
from ..rewiring.spec import (META_KEY, UNRECORDED,  # noqa: F401 (re-exported)
                             checkpoint_rewiring, choose_rewiring, describe,
                             rewiring_of_config, same_function)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a model wrapper (DDP and friends)."""
    return model.module if is_model_wrapper(model) else model


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

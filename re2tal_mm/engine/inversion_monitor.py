"""``InversionMonitorHook``: the reconstruction error of reversible stages."""
from typing import Dict

from mmengine.hooks import Hook
from mmengine.logging import MMLogger

from mmaction.registry import HOOKS
from ..rewiring import rewired_stages
from .rewiring_meta import unwrap


@HOOKS.register_module()
class InversionMonitorHook(Hook):
    """Every ``interval`` training iterations, measure and log the relative
    reconstruction error of each rewired stage (a numerical drift monitor,
    useful under AMP).

    The stages reconstruct their input from their output once in that
    iteration's forward; each error goes to the message hub as
    ``train/inversion_error/<stage>`` and ``last_errors`` holds the latest.
    The model must be rewired by ``before_run`` (at construction, by
    ``RewireBackboneHook``, which runs first, or by
    ``ReversibleDistributedDataParallel``).

    Args:
        interval (int): Measure every this many training iterations.
            Defaults to 50.
    """

    def __init__(self, interval: int = 50):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'{type(self).__name__}: interval must be a '
                             f'positive int, got {interval!r}')
        self.interval = interval
        self.last_errors: Dict[str, float] = {}

    def before_run(self, runner) -> None:
        if not rewired_stages(unwrap(runner.model)):
            raise RuntimeError(
                f'{type(self).__name__}: {type(unwrap(runner.model)).__name__}'
                ' has no rewired stage, so no inversion to monitor: rewire it '
                '(model.rewire, or a RewireBackboneHook in custom_hooks) or '
                'remove this hook')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            for stage in rewired_stages(unwrap(runner.model)):
                stage.probe, stage.last_error = True, None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        errors = {}
        for stage in rewired_stages(unwrap(runner.model)):
            stage.probe = False
            if stage.last_error is not None:
                errors[stage.name] = stage.last_error
                runner.message_hub.update_scalar(
                    f'train/inversion_error/{stage.name}', stage.last_error)
        self.last_errors = errors
        if not errors:
            MMLogger.get_current_instance().warning(
                f'{type(self).__name__}: no rewired stage ran at iter '
                f'{runner.iter + 1}: no inversion error measured')
            return
        text = ', '.join(f'{k}: {v:.3e}' for k, v in errors.items())
        MMLogger.get_current_instance().info(
            f'Inversion relative error at iter {runner.iter + 1}: {text}')

"""``RewireBackboneHook``: rewire the runner's backbone before training."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper

from mmaction.registry import HOOKS

from ..rewiring import is_rewired, rewire, rewired_stages, rewiring_summary


def unwrap(model):
    """The model inside a model wrapper (DDP and friends)."""
    return model.module if is_model_wrapper(model) else model


def format_summary(rows) -> str:
    """One line per stage plus the share of blocks made reversible."""
    lines = [f'  {r["stage"]}: {r["functions"]} functions, '
             f'{r["reversible_blocks"]}/{r["blocks"]} blocks reversible'
             for r in rows]
    total = sum(r['blocks'] for r in rows)
    rev = sum(r['reversible_blocks'] for r in rows)
    share = 100.0 * rev / max(total, 1)
    lines.append(f'  {rev}/{total} blocks ({share:.1f}%) reversible in '
                 f'{sum(r["functions"] > 0 for r in rows)} stages')
    return '\n'.join(lines)


@HOOKS.register_module()
class RewireBackboneHook(Hook):
    """Rewire every supported backbone of the model into a reversible one.

    Runs at ``before_run`` with a high priority, i.e. before weights are
    loaded (state_dict keys do not change, so checkpoints load either way).

    Args:
        mode (str): ``'reversible'`` or ``'autograd'``.
            Defaults to ``'reversible'``.
        check_inversion_interval (int, optional): Every this many training
            iterations, measure and log the relative reconstruction error of
            each reversible stage (numerical drift monitor). Defaults to None.
        rewire_options (dict, optional): Adapter options passed to
            :func:`rewire`, e.g. ``dict(attention_chunk=16)``.
    """

    priority = 'HIGH'

    def __init__(self, mode: str = 'reversible',
                 check_inversion_interval: Optional[int] = None,
                 rewire_options: Optional[dict] = None):
        self.mode = mode
        self.rewire_options = rewire_options or {}
        self.check_inversion_interval = check_inversion_interval
        self.last_errors = {}

    def before_run(self, runner) -> None:
        model = unwrap(runner.model)
        if not is_rewired(model):
            rewire(model, mode=self.mode, **self.rewire_options)
        logger = MMLogger.get_current_instance()
        logger.info(f'RewireBackboneHook: rewired ({self.mode}):\n' +
                    format_summary(rewiring_summary(model)))

    def _probing(self, runner) -> bool:
        n = self.check_inversion_interval
        return bool(n) and self.every_n_train_iters(runner, n)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._probing(runner):
            for stage in rewired_stages(unwrap(runner.model)):
                stage.probe = True

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not self._probing(runner):
            return
        errors = {}
        for stage in rewired_stages(unwrap(runner.model)):
            stage.probe = False
            if stage.last_error is not None:
                errors[stage.name] = stage.last_error
                runner.message_hub.update_scalar(
                    f'train/inversion_error/{stage.name}', stage.last_error)
        self.last_errors = errors
        text = ', '.join(f'{k}: {v:.3e}' for k, v in errors.items())
        MMLogger.get_current_instance().info(
            f'Inversion relative error at iter {runner.iter + 1}: {text}')

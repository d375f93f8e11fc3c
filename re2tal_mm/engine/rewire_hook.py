"""``RewireBackboneHook``: rewire the runner's backbone before training."""
from typing import Optional

from mmengine.logging import MMLogger
from torch.nn.parallel import DistributedDataParallel

from mmaction.registry import HOOKS
from ..rewiring import (RewiringReport, is_rewired, rewire, rewiring_report,
                        unwire)
from .rewiring_meta import RewiringMetaHook, unwrap

DDP_REFUSAL = (
    'RewireBackboneHook: rewire options {options} change which parameters '
    'need gradients ({changed}), but the model is already wrapped in '
    '{wrapper}, built before hooks run: DDP would wait forever for gradients '
    'that never come, or miss new ones. Rewire at construction instead '
    '(model=dict(..., rewire=dict(mode=..., **options)) for '
    'TemporalActionLocalizer), or set model_wrapper_cfg=dict('
    "type='ReversibleDistributedDataParallel', rewire_options=...) so the "
    'model is rewired before it is wrapped.')

# options this hook used to take, now hooks of their own: the entry of
# ``custom_hooks`` that replaces each
MOVED_OPTIONS = dict(
    report_memory="dict(type='ReversibleMemoryProbeHook')",
    check_inversion_interval="dict(type='InversionMonitorHook', "
    'interval={value!r})')


def refuse_moved_options(options: dict) -> None:
    """Name the hook that took over each moved option: an error when it
    asks for the measurement, a warning when it turns it off (now the
    default); an unknown option is a ``TypeError`` as usual."""
    for name, value in options.items():
        if name not in MOVED_OPTIONS:
            raise TypeError('RewireBackboneHook got an unexpected keyword '
                            f'argument {name!r}')
        new = MOVED_OPTIONS[name].format(value=value)
        if value:
            raise TypeError(f'RewireBackboneHook: {name}={value!r} moved to '
                            f'a hook of its own: add {new} to custom_hooks')
        MMLogger.get_current_instance().warning(
            f'RewireBackboneHook: {name}={value!r} is ignored (off is the '
            f'default; the option moved to {new}): drop it')


@HOOKS.register_module()
class RewireBackboneHook(RewiringMetaHook):
    """Rewire every supported backbone of the model into a reversible one.

    For stock MMAction2 configs (recognizers); our own configs rewire the
    localizer at construction (``rewire=`` of ``TemporalActionLocalizer``)
    and use :class:`RewiringMetaHook`. Runs at ``before_run`` with a high
    priority, i.e. before weights are loaded (state_dict keys do not change,
    so checkpoints load either way), logs the
    :func:`~re2tal_mm.rewiring.rewiring_report` (stages, parameters frozen,
    layers left non-reversible) and records the rewiring in every checkpoint
    like :class:`RewiringMetaHook`. Under a DDP wrapper (built before hooks
    run) options that freeze parameters are refused. What the
    non-reversible layers keep and the inversion error are measured by
    ``ReversibleMemoryProbeHook`` and ``InversionMonitorHook``.

    Args:
        mode (str): ``'reversible'`` or ``'autograd'``.
            Defaults to ``'reversible'``.
        rewire_options (dict, optional): Options passed to :func:`rewire`:
            a memory preset (``dict(memory='floor')``: piecewise recompute
            and non-reversible layers recomputed or checkpointed) and
            adapter options overriding it, e.g. ``dict(pieces=4)``.
            Defaults to None.
        **moved: ``report_memory`` and ``check_inversion_interval``, now
            hooks of their own: refused with the entry to use instead.
    """

    def __init__(self, mode: str = 'reversible',
                 rewire_options: Optional[dict] = None, **moved):
        refuse_moved_options(moved)
        self.mode = mode
        self.rewire_options = rewire_options or {}
        self.report: Optional[RewiringReport] = None

    def before_run(self, runner) -> None:
        model = unwrap(runner.model)
        if not is_rewired(model):
            rewire(model, mode=self.mode, **self.rewire_options)
            self.refuse_frozen_under_ddp(runner, rewiring_report(model))
        self.report = rewiring_report(model)
        MMLogger.get_current_instance().info(
            f'RewireBackboneHook: rewired ({self.report.spec["mode"]}):\n'
            + self.report.format())

    def refuse_frozen_under_ddp(self, runner,
                                report: RewiringReport) -> None:
        """Un-rewire and raise when the rewiring froze parameters of a model
        DDP already wraps."""
        if report.frozen and isinstance(runner.model,
                                        DistributedDataParallel):
            unwire(unwrap(runner.model))
            raise RuntimeError(DDP_REFUSAL.format(
                options=self.rewire_options,
                changed=f'{len(report.frozen)} parameters, e.g. '
                f'{report.frozen[0]}',
                wrapper=type(runner.model).__name__))

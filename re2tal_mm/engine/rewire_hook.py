"""``RewireBackboneHook``: rewire the runner's backbone before training."""
from typing import Dict, Iterator, Optional

import torch
from mmengine.logging import MMLogger
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmaction.registry import HOOKS
from ..rewiring import (find_backbones, is_rewired, rewire, rewired_stages,
                        rewiring_summary, unwire)
from .rewiring_meta import RewiringMetaHook, unwrap


def format_summary(rows) -> str:
    """One line per stage plus the share of blocks made reversible."""

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


def non_reversible_layers(model: nn.Module) -> Iterator[tuple]:
    """``(name, module, policy)`` of every layer outside the reversible
    chains, for backbones whose adapter lists them."""
    for name, backbone, adapter in find_backbones(model):
        for sub, module, policy in adapter.non_reversible(
                backbone, rewired_stages(backbone)):
            yield (f'{name}.{sub}' if name else sub), module, policy


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages among ``tensors``."""
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != 'meta':
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


class KeptBytesProbe:
    """Measures what one forward of ``module`` keeps for the backward.

    Saved tensors are counted through ``saved_tensors_hooks`` (parameters
    excluded); a checkpointed layer keeps its inputs instead. Only byte
    counts are recorded, never the tensors, so probing does not raise the
    peak it measures; the hooks are left even when the forward raises.

    Args:
        module (nn.Module): The layer.
        policy (str): ``'kept'``, ``'checkpoint'``, ``'recompute'`` or
            ``'frozen'``.
    """

    def __init__(self, module, policy: str):
        self.policy = policy
        self.params = {p.data_ptr() for p in module.parameters()}
        self.saved: Dict[int, int] = {}  # storage address -> bytes
        self.input_bytes = 0
        self.calls = 0
        self.context = None
        self.handles = [
            module.register_forward_pre_hook(self.enter),
            # always_call: the saved-tensor hooks are popped even when the
            # forward raises (else every later tensor would be counted)
            module.register_forward_hook(self.exit, always_call=True)]

    def pack(self, t):
        if t.data_ptr() not in self.params and t.device.type != 'meta':
            storage = t.untyped_storage()
            self.saved[storage.data_ptr()] = storage.nbytes()
        return t

    def enter(self, module, args):
        self.calls += 1
        self.input_bytes += tensor_bytes(args)
        self.context = torch.autograd.graph.saved_tensors_hooks(
            self.pack, lambda t: t)
        self.context.__enter__()

    def exit(self, module, args, output):
        if self.context is not None:
            self.context.__exit__(None, None, None)
            self.context = None

    @property
    def kept_bytes(self) -> int:
        """Bytes kept: the inputs of a checkpointed layer, else the distinct
        saved storages (none when recomputed or frozen)."""
        if self.policy == 'checkpoint':
            return self.input_bytes
        return sum(self.saved.values())

    def remove(self):
        for h in self.handles:
            h.remove()
        self.exit(None, None, None)


def format_kept_bytes(rows: Dict[str, tuple]) -> str:
    """One line per non-reversible layer: policy and MiB kept."""
    lines = [f'  {name} ({policy}): {kept / 2**20:.1f} MiB kept, input '
             f'{inp / 2**20:.1f} MiB' for name, (policy, kept, inp) in
             rows.items()]
    total = sum(kept for _, kept, _ in rows.values())
    lines.append(f'  total kept by non-reversible layers: '
                 f'{total / 2**20:.1f} MiB')
    return '\n'.join(lines)


def trainable_names(model) -> set:
    return {n for n, p in model.named_parameters() if p.requires_grad}


DDP_REFUSAL = (
    'RewireBackboneHook: rewire options {options} change which parameters '
    'need gradients ({changed}), but the model is already wrapped in '
    '{wrapper}, built before hooks run: DDP would wait forever for gradients '
    'that never come, or miss new ones. Rewire at construction instead '
    '(model=dict(..., rewire=dict(mode=..., **options)) for '
    'TemporalActionLocalizer), or set model_wrapper_cfg=dict('
    "type='ReversibleDistributedDataParallel', rewire_options=...) so the "
    'model is rewired before it is wrapped.')


@HOOKS.register_module()
class RewireBackboneHook(RewiringMetaHook):
    """Rewire every supported backbone of the model into a reversible one.

    For stock MMAction2 configs (recognizers); our own configs rewire the
    localizer at construction (``rewire=`` of ``TemporalActionLocalizer``)
    and use :class:`RewiringMetaHook`. Runs at ``before_run`` with a high
    priority, i.e. before weights are loaded (state_dict keys do not change,
    so checkpoints load either way), and records the rewiring in every
    checkpoint like :class:`RewiringMetaHook`. Under a DDP wrapper (built
    before hooks run) options that freeze parameters are refused.

    Args:
        mode (str): ``'reversible'`` or ``'autograd'``.
            Defaults to ``'reversible'``.
        check_inversion_interval (int, optional): Every this many training
            iterations, measure and log the relative reconstruction error of
            each reversible stage (numerical drift monitor). Defaults to None.
        rewire_options (dict, optional): Options passed to :func:`rewire`:
            a memory preset (``dict(memory='floor')``: piecewise recompute
            and non-reversible layers recomputed or checkpointed) and
            adapter options overriding it, e.g. ``dict(pieces=4)``.
            Defaults to None.
        report_memory (bool): On the first training iteration, measure and
            log what each non-reversible layer keeps for the backward under
            the chosen option (kept, checkpoint, recompute, frozen): byte
            counts only, at no memory cost. Defaults to True.
    """

    def __init__(self, mode: str = 'reversible',
                 check_inversion_interval: Optional[int] = None,
                 rewire_options: Optional[dict] = None,
                 report_memory: bool = True):
        self.mode = mode
        self.report_memory = report_memory
        self.probes = {}
        self.kept_bytes = {}
        self.rewire_options = rewire_options or {}
        self.check_inversion_interval = check_inversion_interval
        self.last_errors = {}
        self.memory_probed = False

    def before_run(self, runner) -> None:
        model = unwrap(runner.model)
        if not is_rewired(model):
            before = trainable_names(model)
            rewire(model, mode=self.mode, **self.rewire_options)
            changed = before ^ trainable_names(model)
            if changed and isinstance(runner.model, DistributedDataParallel):
                unwire(model)
                raise RuntimeError(DDP_REFUSAL.format(
                    options=self.rewire_options,
                    changed=f'{len(changed)} parameters, e.g. '
                    f'{sorted(changed)[0]}',
                    wrapper=type(runner.model).__name__))
        logger = MMLogger.get_current_instance()
        logger.info(f'RewireBackboneHook: rewired ({self.mode}):\n' +
                    format_summary(rewiring_summary(model)))

    def _probing(self, runner) -> bool:
        n = self.check_inversion_interval
        return bool(n) and self.every_n_train_iters(runner, n)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.report_memory and not self.memory_probed:
            self.memory_probed = True  # the model is walked once
            self.probes = {
                name: KeptBytesProbe(module, policy) for name, module, policy
                in non_reversible_layers(unwrap(runner.model))}
        if self._probing(runner):
            for stage in rewired_stages(unwrap(runner.model)):
                stage.probe = True

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.probes:
            self.kept_bytes = {
                name: (p.policy, p.kept_bytes, p.input_bytes)
                for name, p in self.probes.items()}
            for p in self.probes.values():
                p.remove()
            self.probes = {}
            MMLogger.get_current_instance().info(
                'Memory kept for the backward by non-reversible layers '
                '(first iteration):\n' + format_kept_bytes(self.kept_bytes))
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

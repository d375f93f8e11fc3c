"""``RewireBackboneHook``: rewire the runner's backbone before training."""
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper

from mmaction.registry import HOOKS

from ..rewiring import (find_backbones, is_rewired, rewire, rewired_stages,
                        rewiring_summary)


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


def non_reversible_layers(model):
    """``(name, module, policy)`` of every layer outside the reversible
    chains, for backbones whose adapter lists them."""
    for name, backbone, adapter in find_backbones(model):
        if not hasattr(adapter, 'non_reversible'):
            continue
        for sub, module, policy in adapter.non_reversible(backbone):
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
    excluded); a checkpointed layer keeps its inputs instead.

    Args:
        module (nn.Module): The layer.
        policy (str): ``'kept'``, ``'checkpoint'``, ``'recompute'`` or
            ``'frozen'``.
    """

    def __init__(self, module, policy: str):
        self.policy = policy
        self.params = {p.data_ptr() for p in module.parameters()}
        self.saved = []
        self.input_bytes = 0
        self.calls = 0
        self.handles = [module.register_forward_pre_hook(self.enter),
                        module.register_forward_hook(self.exit)]
        self.context = None

    def pack(self, t):
        if t.data_ptr() not in self.params:
            self.saved.append(t)
        return t

    def enter(self, module, args):
        self.calls += 1
        self.input_bytes += tensor_bytes(args)
        self.context = torch.autograd.graph.saved_tensors_hooks(
            self.pack, lambda t: t)
        self.context.__enter__()

    def exit(self, module, args, output):
        self.context.__exit__(None, None, None)

    @property
    def kept_bytes(self) -> int:
        """Bytes kept: the inputs of a checkpointed layer, else the distinct
        saved tensors (none when recomputed or frozen)."""
        if self.policy == 'checkpoint':
            return self.input_bytes
        return tensor_bytes(self.saved)

    def remove(self):
        for h in self.handles:
            h.remove()
        self.saved = []


def format_kept_bytes(rows: Dict[str, tuple]) -> str:
    """One line per non-reversible layer: policy and MiB kept."""
    lines = [f'  {name} ({policy}): {kept / 2**20:.1f} MiB kept, input '
             f'{inp / 2**20:.1f} MiB' for name, (policy, kept, inp) in
             rows.items()]
    total = sum(kept for _, kept, _ in rows.values())
    lines.append(f'  total kept by non-reversible layers: '
                 f'{total / 2**20:.1f} MiB')
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
            :func:`rewire`, e.g. ``dict(attention_chunk=16)``; for the
            memory floor ``dict(chunks=8, merging='recompute')`` (Swin) or
            ``dict(chunks=4, chunk_mib=64)``: recompute in pieces, at least
            ``chunks`` and each piece's input at most ``chunk_mib`` MiB.
        report_memory (bool): On the first training iteration, measure and
            log what each non-reversible layer keeps for the backward under
            the chosen option (kept, checkpoint, recompute, frozen).
            Defaults to True.
    """

    priority = 'HIGH'

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
        if self.report_memory and not self.kept_bytes and not self.probes:
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

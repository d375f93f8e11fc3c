"""``ReversibleMemoryProbeHook``: what the non-reversible layers keep."""
from typing import Dict

import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger

from mmaction.registry import HOOKS
from ..rewiring import is_rewired, non_reversible_layers
from .rewiring_meta import unwrap


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


@HOOKS.register_module()
class ReversibleMemoryProbeHook(Hook):
    """Log what each non-reversible layer keeps for the backward.

    On the first training iteration, every layer the adapters list outside
    the reversible chains (:func:`~re2tal_mm.rewiring.non_reversible_layers`)
    is probed with a :class:`KeptBytesProbe` under its policy (kept,
    checkpoint, recompute, frozen): byte counts only, so probing does not
    raise the peak it measures. The probes are removed after that
    iteration; ``kept_bytes`` holds ``{name: (policy, kept, input bytes)}``.
    The model must be rewired by then (at construction, by
    ``RewireBackboneHook`` or by ``ReversibleDistributedDataParallel``).
    """

    def __init__(self):
        self.probes: Dict[str, KeptBytesProbe] = {}
        self.kept_bytes: Dict[str, tuple] = {}
        self.probed = False

    def before_run(self, runner) -> None:
        if not is_rewired(unwrap(runner.model)):
            raise RuntimeError(
                f'{type(self).__name__}: {type(unwrap(runner.model)).__name__}'
                ' has no rewired backbone, so no non-reversible layer to '
                'measure: rewire it (model.rewire, or a RewireBackboneHook '
                'in custom_hooks) or remove this hook')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self.probed:
            return
        self.probed = True  # the model is walked once
        self.probes = {name: KeptBytesProbe(layer, policy)
                       for name, layer, policy
                       in non_reversible_layers(unwrap(runner.model))}
        if not self.probes:
            MMLogger.get_current_instance().warning(
                f'{type(self).__name__}: the adapters list no '
                'non-reversible layer of this model: nothing to measure')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.probes:
            return
        self.kept_bytes = {name: (p.policy, p.kept_bytes, p.input_bytes)
                           for name, p in self.probes.items()}
        for p in self.probes.values():
            p.remove()
        self.probes = {}
        MMLogger.get_current_instance().info(
            'Memory kept for the backward by non-reversible layers '
            '(first iteration):\n' + format_kept_bytes(self.kept_bytes))

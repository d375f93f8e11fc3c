"""RewireBackboneHook under DDP, its report and moved options; the memory
probe and inversion monitor hooks."""
import datetime
import gc
import os
import weakref
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from torch import nn

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.engine import (InversionMonitorHook, ReversibleMemoryProbeHook,
                              RewireBackboneHook)
from re2tal_mm.engine.memory_probe import KeptBytesProbe
from re2tal_mm.rewiring import is_rewired, rewire, rewired_stages

from .conftest import free_port, spawn_and_wait
from .test_pieces import tiny_swin


def refused_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a bounded wait: a rendezvous or collective that cannot complete
    # raises instead of hanging
    torch.distributed.init_process_group(
        'gloo', rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60))
    from mmengine.model import MMDistributedDataParallel
    torch.manual_seed(0)
    model = tiny_swin()
    wrapped = MMDistributedDataParallel(module=model)  # as the Runner does
    hook = RewireBackboneHook(rewire_options=dict(freeze_patch_embed=True))
    try:
        hook.before_run(SimpleNamespace(model=wrapped))
        message = 'no error'
    except RuntimeError as err:
        message = str(err)
    state = (is_rewired(model), all(p.requires_grad
                                    for p in model.parameters()))
    # the processes are still in step: a collective goes through
    flag = torch.ones(1)
    torch.distributed.all_reduce(flag)
    with open(os.path.join(out_dir, f'rank{rank}.txt'), 'w') as f:
        f.write(f'{state}|{int(flag.item())}|{message}')
    torch.distributed.destroy_process_group()


def test_ddp_refuses_options_that_freeze_parameters(tmp_path):
    spawn_and_wait(refused_worker, (2, free_port(), str(tmp_path)),
                   timeout=120, attempts=2)
    for rank in range(2):
        state, total, message = (tmp_path / f'rank{rank}.txt').read_text(
        ).split('|', 2)
        assert state == '(False, True)'  # un-rewired again, nothing frozen
        assert total == '2'
        assert 'freeze_patch_embed' in message
        assert 'MMDistributedDataParallel' in message
        assert 'rewire=dict' in message
        assert 'ReversibleDistributedDataParallel' in message
        # the frozen parameters come from the rewiring report
        assert '4 parameters, e.g. patch_embed.norm.bias' in message


def test_hook_allows_the_options_without_ddp(tmp_path):
    model = tiny_swin()
    log = tmp_path / 'hook.log'
    MMLogger.get_instance('test_hook_report', log_file=str(log))
    hook = RewireBackboneHook(rewire_options=dict(freeze_patch_embed=True))
    hook.before_run(SimpleNamespace(model=model))
    assert is_rewired(model)
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    # the hook keeps and logs the rewiring report
    assert hook.report.frozen == tuple(sorted(
        f'patch_embed.{n}' for n, _ in model.patch_embed.named_parameters()))
    assert [r['stage'] for r in hook.report.stages] == ['layers.0',
                                                        'layers.1']
    text = log.read_text()
    assert 'rewired (reversible)' in text
    assert '4/4 blocks (100.0%) reversible in 2 stages' in text
    assert 'frozen by the rewiring: 4 parameters' in text
    assert 'non-reversible: patch_embed (frozen), layers.0.downsample' in text


def test_moved_options_name_their_hooks(tmp_path):
    with pytest.raises(TypeError, match="InversionMonitorHook', interval=5"):
        RewireBackboneHook(check_inversion_interval=5)
    with pytest.raises(TypeError, match="type='ReversibleMemoryProbeHook'"):
        RewireBackboneHook(report_memory=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'mdoe'"):
        RewireBackboneHook(mdoe='autograd')
    log = tmp_path / 'moved.log'
    MMLogger.get_instance('test_moved_options', log_file=str(log))
    hook = RewireBackboneHook(mode='autograd', report_memory=False,
                              check_inversion_interval=None)
    assert hook.mode == 'autograd'
    text = log.read_text()
    assert 'report_memory=False is ignored' in text
    assert "moved to dict(type='ReversibleMemoryProbeHook')" in text
    assert 'check_inversion_interval=None is ignored' in text


class Boom(nn.Module):

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.fail = False

    def forward(self, x):
        mid = self.lin(x)
        self.mid = weakref.ref(mid)  # saved by sin for its backward
        y = torch.sin(mid)
        if self.fail:
            raise ValueError('boom')
        return y


def test_probe_keeps_byte_counts_only_and_survives_an_exception():
    layer = Boom()
    probe = KeptBytesProbe(layer, 'kept')
    x = torch.randn(8, 4, requires_grad=True)
    out = layer(x)
    kept = probe.kept_bytes
    assert kept == 2 * 8 * 4 * 4  # the Linear's input and sin's input
    assert all(isinstance(v, int) for v in probe.saved.values())
    # the probe holds no tensor: the saved activations die with the graph
    assert layer.mid() is not None
    del out
    gc.collect()
    assert layer.mid() is None
    layer.fail = True
    with pytest.raises(ValueError, match='boom'):
        layer(x)
    # the saved-tensor hooks were popped: later graphs are not counted
    before = dict(probe.saved)
    (torch.randn(16, 16, requires_grad=True).exp() * 2).sum()
    assert probe.saved == before
    probe.remove()


def test_memory_report_walks_the_model_once(monkeypatch):
    from re2tal_mm.engine import memory_probe
    calls = []
    monkeypatch.setattr(memory_probe, 'non_reversible_layers',
                        lambda model: calls.append(1) or iter(()))
    hook = ReversibleMemoryProbeHook()
    runner = SimpleNamespace(model=nn.Linear(2, 2), iter=0)
    for i in range(3):
        hook.before_train_iter(runner, i)
        hook.after_train_iter(runner, i)
    assert calls == [1]


def runner_of(model, name):
    """What the hooks read of a runner: the model, the iteration, a
    message hub."""
    return SimpleNamespace(model=model, iter=0,
                           message_hub=MessageHub.get_instance(name))


def train_iter(hooks, runner, x):
    for hook in hooks:
        hook.before_train_iter(runner, runner.iter)
    runner.model(x).sum().backward()
    for hook in hooks:
        hook.after_train_iter(runner, runner.iter)
    runner.iter += 1


def test_memory_probe_hook_measures_the_first_iteration_only():
    torch.manual_seed(0)
    model = tiny_swin()
    rewire(model, merging='checkpoint')
    hook = ReversibleMemoryProbeHook()
    runner = runner_of(model, 'test_memory_probe_hook')
    hook.before_run(runner)
    x = torch.randn(1, 3, 12, 40, 40)
    train_iter([hook], runner, x)
    stage_out = 1 * 6 * 10 * 10 * 16 * 4  # float32 stage-0 output
    assert hook.kept_bytes['layers.0.downsample'] == ('checkpoint',
                                                      stage_out, stage_out)
    policy, kept, inp = hook.kept_bytes['patch_embed']
    assert policy == 'kept' and kept >= inp == x.numel() * 4
    # the probes are gone after the first iteration
    assert not any(m._forward_hooks or m._forward_pre_hooks
                   for m in model.modules())
    first = dict(hook.kept_bytes)
    train_iter([hook], runner, 2 * x)
    assert hook.kept_bytes == first and not hook.probes


def test_memory_probe_hook_refuses_a_plain_model():
    with pytest.raises(RuntimeError, match='no rewired backbone.*'
                       'RewireBackboneHook'):
        ReversibleMemoryProbeHook().before_run(
            SimpleNamespace(model=tiny_swin()))


def test_inversion_monitor_hook_measures_every_interval():
    torch.manual_seed(0)
    model = tiny_swin()
    rewire(model)
    hook = InversionMonitorHook(interval=2)
    runner = runner_of(model, 'test_inversion_monitor_hook')
    hook.before_run(runner)
    x = torch.randn(1, 3, 12, 40, 40)
    train_iter([hook], runner, x)  # iteration 1: not measured
    assert hook.last_errors == {}
    assert all(s.last_error is None for s in rewired_stages(model))
    train_iter([hook], runner, x)  # iteration 2: measured
    assert sorted(hook.last_errors) == ['layers.0', 'layers.1']
    assert all(0 <= e < 1e-5 for e in hook.last_errors.values())
    hub = runner.message_hub.log_scalars
    assert hub['train/inversion_error/layers.0'].current() == \
        hook.last_errors['layers.0']
    # probing is switched off again after the measured iteration
    assert not any(s.probe for s in rewired_stages(model))


def test_inversion_monitor_hook_refuses_a_plain_model_and_bad_interval():
    with pytest.raises(RuntimeError, match='no rewired stage'):
        InversionMonitorHook().before_run(SimpleNamespace(model=tiny_swin()))
    with pytest.raises(ValueError, match='positive int'):
        InversionMonitorHook(interval=0)

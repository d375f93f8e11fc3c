"""RewireBackboneHook under DDP and its memory probe."""
import datetime
import gc
import os
import weakref
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.engine import RewireBackboneHook
from re2tal_mm.engine.rewire_hook import KeptBytesProbe
from re2tal_mm.rewiring import is_rewired

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


def test_hook_allows_the_options_without_ddp():
    model = tiny_swin()
    RewireBackboneHook(rewire_options=dict(freeze_patch_embed=True),
                       report_memory=False).before_run(
        SimpleNamespace(model=model))
    assert is_rewired(model)
    assert not any(p.requires_grad for p in model.patch_embed.parameters())


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
    from re2tal_mm.engine import rewire_hook
    calls = []
    monkeypatch.setattr(rewire_hook, 'non_reversible_layers',
                        lambda model: calls.append(1) or iter(()))
    hook = RewireBackboneHook()
    runner = SimpleNamespace(model=nn.Linear(2, 2), iter=0)
    for i in range(3):
        hook.before_train_iter(runner, i)
        hook.after_train_iter(runner, i)
    assert calls == [1]

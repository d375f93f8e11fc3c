"""What CPU twins cannot cover; skipped without CUDA.

Run on a GPU machine with ``.venv/bin/python -m pytest tests/test_cuda.py``:

* fp16 ``AmpOptimWrapper`` (``GradScaler``) on a rewired model: reversible
  and autograd mode take the same step;
* CUDA RNG replay of dropout and drop-path in the recompute (float64, 1e-10);
* ``tools/analysis/benchmark_memory.py --device cuda`` for Swin-T at 32
  frames (``max_memory_allocated``): reversible below plain.
"""
import copy
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.reversible import relative_error
from re2tal_mm.rewiring import rewire

from mmaction.models.backbones import SwinTransformer3D
from .conftest import REPO

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs CUDA')


def small_swin(**kwargs):
    return SwinTransformer3D(
        arch=dict(embed_dims=48, depths=(2, 2, 2, 2), num_heads=(2, 2, 2, 2)),
        window_size=(2, 4, 4), pretrained=None, pretrained2d=False,
        **kwargs)


def step(model, x, seed=1):
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    out = model(x)
    weights = torch.linspace(-1, 1, out.numel(), device=x.device,
                             dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return grads, torch.cuda.get_rng_state()


def test_cuda_rng_replay_of_dropout_and_drop_path():
    torch.manual_seed(0)
    model = small_swin(drop_path_rate=0.5, drop_rate=0.2,
                       attn_drop_rate=0.2).cuda().double().train()
    x = torch.randn(1, 3, 4, 32, 32, device='cuda', dtype=torch.float64)
    twin = copy.deepcopy(model)
    rewire(twin, 'autograd')
    rewire(model, 'reversible')
    grads_a, rng_a = step(twin, x)
    grads_r, rng_r = step(model, x)
    assert torch.equal(rng_a, rng_r)  # the replay leaves the CUDA RNG alone
    assert max(relative_error(r, a) for a, r in zip(grads_a, grads_r)) \
        < 1e-10
    # different seeds draw other masks: the test could fail
    grads_b, _ = step(model, x, seed=2)
    assert relative_error(grads_b[0], grads_r[0]) > 1e-3


def test_fp16_amp_optim_wrapper_same_step_as_autograd():
    from mmengine.optim import AmpOptimWrapper
    torch.manual_seed(0)
    model = small_swin().cuda().train()
    x = torch.randn(2, 3, 8, 64, 64, device='cuda')
    params = []
    for mode in ('autograd', 'reversible'):
        m = copy.deepcopy(model)
        rewire(m, mode)
        wrapper = AmpOptimWrapper(
            optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
            dtype='float16')
        for _ in range(2):  # the scaler's first step, then a scaled one
            with wrapper.optim_context(m):
                loss = m(x).float().square().mean()
            wrapper.update_params(loss)
        params.append([p.detach().float() for p in m.parameters()])
        assert wrapper.loss_scaler.get_scale() > 1
    moved = [relative_error(p, q.detach().float()) for p, q in
             zip(params[0], model.parameters())]
    assert max(moved) > 1e-4  # the steps did something
    for a, r in zip(*params):
        assert relative_error(r, a) < 2e-2


def test_benchmark_memory_cuda_swin_t_32_frames(tmp_path):
    script = osp.join(REPO, 'tools', 'analysis', 'benchmark_memory.py')
    res = subprocess.run(
        [sys.executable, script, '--models', 'swin-t', '--frames', '32',
         '--variants', 'plain', 'reversible', 'reversible+floor',
         '--device', 'cuda', '--out-dir', str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
        env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    print(res.stdout)
    rows = {r['variant']: r for r in json.load(open(tmp_path /
                                                    'results.json'))}
    assert rows['reversible']['peak_mib'] < 0.5 * rows['plain']['peak_mib']
    assert rows['reversible+floor']['peak_mib'] <= \
        rows['reversible']['peak_mib']

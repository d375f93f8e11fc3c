import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')


def run_python(code, env=None, timeout=300):
    """Run ``code`` in a fresh interpreter (import-order sensitive tests)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def shared_data():
    """The real annotation files beside the checkout (skipped when absent)."""
    if not osp.isdir(SHARED_DATA):
        pytest.skip(f'shared data not found at {SHARED_DATA}')
    return SHARED_DATA


def free_port():
    """A free TCP port on the loopback interface."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def spawn_and_wait(worker, args, nprocs=2, timeout=300):
    """``torch.multiprocessing.spawn`` with a deadline: a hang fails the
    test (workers terminated) instead of blocking the suite."""
    import time

    import torch.multiprocessing as mp
    ctx = mp.spawn(worker, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.terminate()
            pytest.fail(f'{worker.__name__} did not finish in {timeout} s')

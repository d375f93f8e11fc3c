import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')
OPENTAD_FIXTURES = osp.join(osp.dirname(REPO), 'shared', 'reference',
                            'opentad')


def shared_path(path):
    """``path`` under ``../shared``; a test that needs it skips when it is
    absent, except in CI (``CI=true``), which always has ``../shared``: there
    it fails, so a moved file cannot turn a check into a skip."""
    if not osp.exists(path):
        message = f'shared material not found at {path}'
        if os.environ.get('CI'):
            pytest.fail(message + ' (CI always has ../shared)')
        pytest.skip(message)
    return path


def opentad_fixture(name):
    """An OpenTAD reference fixture (``../shared/reference/opentad``),
    loaded (see :func:`shared_path` for when it is absent)."""
    import torch
    return torch.load(shared_path(osp.join(OPENTAD_FIXTURES, name)),
                      map_location='cpu', weights_only=True)


def run_python(code, env=None, timeout=300):
    """Run ``code`` in a fresh interpreter (import-order sensitive tests)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def shared_data():
    """The real annotation files beside the checkout (see
    :func:`shared_path` for when they are absent)."""
    return shared_path(SHARED_DATA)


def free_port():
    """A free TCP port on the loopback interface."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _with_traceback_on_hang(rank, worker, timeout, *args):
    """Run ``worker`` and, if it is still running after ``timeout`` s,
    print every thread's stack to stderr first: a hung rank says where."""
    import faulthandler
    faulthandler.dump_traceback_later(timeout)
    try:
        worker(rank, *args)
    finally:
        faulthandler.cancel_dump_traceback_later()


def spawn_and_wait(worker, args, nprocs=2, timeout=300, attempts=1):
    """``torch.multiprocessing.spawn`` with a deadline: a hang fails the
    test (workers terminated, after printing their stacks) instead of
    blocking the suite.

    ``args[1]`` is the rendezvous port when ``attempts > 1``: a timed-out
    attempt is repeated on a fresh port (a port picked by :func:`free_port`
    can be taken by another process before the workers bind it, and a rank
    that reaches someone else's store waits forever, or raises when the
    workers bound their rendezvous).
    """
    import time

    import torch.multiprocessing as mp
    for attempt in range(attempts):
        if attempt:
            args = (args[0], free_port(), *args[2:])
        ctx = mp.spawn(_with_traceback_on_hang,
                       args=(worker, max(timeout - 10, 1), *args),
                       nprocs=nprocs, join=False)
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=5):
                if time.monotonic() > deadline:
                    for proc in ctx.processes:
                        proc.terminate()
                    break
            else:
                return
        except mp.ProcessRaisedException:
            # a bounded rendezvous that timed out raises in the worker;
            # the last attempt lets the worker's error through
            if attempt == attempts - 1:
                raise
    pytest.fail(f'{worker.__name__} did not finish in {timeout} s '
                f'({attempts} attempt(s))')


def own_logger(cfg, tag='test'):
    """Give ``cfg`` an experiment name of its own: MMEngine names the
    Runner's logger after it (by default the config and the second the
    Runner is built), so two Runners built in one second would share the
    first one's logger, and log into its file."""
    import uuid
    cfg.experiment_name = f'{tag}_{uuid.uuid4().hex[:12]}'
    return cfg


def runner_log(runner):
    """What ``runner`` has logged to its work_dir log file so far."""
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


@pytest.fixture(scope='module')
def one_thread():
    """Tiny ops: one torch thread avoids spinning on a shared CPU (restored
    after the module). Use with ``pytestmark = pytest.mark.usefixtures(
    'one_thread')``."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

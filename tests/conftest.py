import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')


def run_python(code, env=None, timeout=300):
    """Run ``code`` in a fresh interpreter (for import-order sensitive tests)."""
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

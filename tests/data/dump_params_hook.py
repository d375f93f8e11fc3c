"""Test helper: each rank saves its final parameters to ``$RE2TAL_DUMP_DIR``.

Imported by the distributed test through ``custom_imports`` (with
``tests/data`` on ``PYTHONPATH``).
"""
import os
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmaction.registry import HOOKS


@HOOKS.register_module()
class DumpParamsHook(Hook):
    """Save the (unwrapped) model's parameters before and after training.

    Buffers are left out: DDP broadcasts them from rank 0 before each forward,
    but a forward may update them locally (e.g. a running loss normalizer).
    """
    priority = 'LOWEST'

    @staticmethod
    def _params(runner):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        return {k: v.detach().cpu().clone()
                for k, v in model.named_parameters()}

    def before_train(self, runner):
        self._init = self._params(runner)

    def after_train(self, runner):
        out = os.environ.get('RE2TAL_DUMP_DIR')
        if not out:
            return
        torch.save(dict(params=self._params(runner), init=self._init,
                        iter=runner.iter,
                        wrapper=type(runner.model).__name__),
                   osp.join(out, f'rank{get_rank()}.pth'))

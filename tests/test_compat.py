"""Each patch of re2tal_mm.compat, with a test that fails without it."""
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

import re2tal_mm  # noqa: F401  (applies the patches)
from re2tal_mm import compat

from .conftest import run_python


# --- the mmaction2 1.2.0 wheel lacks localizers/drn --------------------------
def test_wheel_defect_is_real_without_the_plugin():
    """Documents the defect: without re2tal_mm, importing the models fails."""
    if not compat.drn_is_missing():
        pytest.skip('this mmaction2 ships localizers/drn (defect absent)')
    result = run_python('import mmaction.models')
    assert result.returncode != 0
    assert "No module named 'mmaction.models.localizers.drn'" in result.stderr


def test_models_import_after_plugin():
    result = run_python(
        'import logging; logging.basicConfig(level=logging.INFO)\n'
        'import re2tal_mm, mmaction.models\n'
        'from mmaction.registry import MODELS\n'
        'assert MODELS.get("Recognizer3D") is not None\n'
        'from mmaction.models.localizers import DRN\n'
        'try:\n    DRN()\nexcept RuntimeError as e:\n    print("DRN:", e)\n')
    assert result.returncode == 0, result.stderr
    if compat.drn_is_missing():
        assert 'DRN: DRN is unavailable' in result.stdout
        assert result.stderr.count('DRN is unavailable') == 1  # logged once


def test_import_is_silent():
    result = run_python('import re2tal_mm, mmaction.models')
    assert result.returncode == 0, result.stderr
    assert result.stdout == '' and result.stderr == ''


def test_mmcv_lite_warning_silenced_by_the_plugin():
    """Without the plugin the warning prints; with its patch it does not."""
    bare = run_python('import mmcv.cnn.bricks.transformer')
    if 'MultiScaleDeformableAttention' not in bare.stderr:
        pytest.skip('full mmcv installed: no warning to silence')
    patched = run_python(
        'from re2tal_mm.compat import silence_mmcv_lite_warning\n'
        'silence_mmcv_lite_warning()\n'
        'import mmcv.cnn.bricks.transformer')
    assert patched.returncode == 0, patched.stderr
    assert 'MultiScaleDeformableAttention' not in patched.stderr


# --- dependency versions -------------------------------------------------
@pytest.mark.parametrize('name,bad', [('mmcv', '2.2.0'), ('mmengine', '0.9.1'),
                                      ('mmaction2', '1.3.0'),
                                      ('mmaction2', '1.1.0'),
                                      ('torch', '2.3.1'),
                                      ('torch', '2.0.1')])
def test_incompatible_version_names_package_found_and_range(name, bad):
    versions = {'torch': '2.13.0+cpu', 'mmengine': '0.10.7',
                'mmaction2': '1.2.0', 'mmcv': '2.1.0', name: bad}
    with pytest.raises(ImportError) as info:
        compat.check_dependencies(versions.get)
    message = str(info.value)
    low, high, _ = compat.REQUIRED_VERSIONS[name]
    assert f'{name}=={bad}' in message and f'>={low}' in message
    if high:
        assert f'<{high}' in message


def test_missing_mmcv_says_what_to_install():
    versions = {'torch': '2.13.0', 'mmengine': '0.10.7', 'mmaction2': '1.2.0'}
    with pytest.raises(ImportError, match='mmcv-lite==2.1.0'):
        compat.check_dependencies(versions.get)


def test_installed_stack_passes_and_versions_parse():
    compat.check_dependencies()
    versions = {'torch': '2.13.0+cpu', 'mmengine': '0.10.7',
                'mmaction2': '1.2.0', 'mmcv': '2.1.0'}
    compat.check_dependencies(versions.get)  # a local version label
    with pytest.raises(ImportError, match='mmengine==0.11.0 '):
        compat.check_dependencies(dict(versions, mmengine='0.11.0').get)
    with pytest.raises(ImportError, match='torch==2.4.0rc1'):  # before 2.4
        compat.check_dependencies(dict(versions, torch='2.4.0rc1').get)


# --- resume under torch's weights-only default -------------------------------
class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            err = out.squeeze(1) - torch.stack(targets)
            return {'loss': (err**2).mean()}
        return out


class TinyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, generator=g),
                    targets=torch.tensor(float(i % 2)))


def make_runner(work_dir, max_epochs, resume=False):
    return Runner(
        model=TinyModel(), work_dir=str(work_dir),
        train_dataloader=DataLoader(TinyData(), batch_size=2,
                                    collate_fn=lambda b: dict(
                                        inputs=[x['inputs'] for x in b],
                                        targets=[x['targets'] for x in b])),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume, default_scope='mmengine',
        experiment_name=f'tiny_{max_epochs}_{resume}')


def test_weights_only_default_is_in_force():
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ


def test_resume_restores_iteration_optimizer_and_message_hub(tmp_path):
    first = make_runner(tmp_path, max_epochs=1)
    first.train()
    momentum = first.optim_wrapper.optimizer.state_dict()['state']
    loss_history = first.message_hub.get_scalar('train/loss').data[0].copy()
    assert (tmp_path / 'epoch_1.pth').exists()

    second = make_runner(tmp_path, max_epochs=2, resume=True)
    second.train()
    assert second.iter == 8 and second.epoch == 2  # 4 iterations per epoch
    # the optimizer state was restored before epoch 2 went on: compare the
    # checkpoint's state with epoch 1's final state
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu')
    for key, state in momentum.items():
        assert torch.equal(ckpt['optimizer']['state'][key]['momentum_buffer'],
                           state['momentum_buffer'])
    resumed = second.message_hub.get_scalar('train/loss').data[0]
    np.testing.assert_array_equal(resumed[:len(loss_history)], loss_history)
    assert len(resumed) == 8


def test_resume_fails_without_the_allow_list(tmp_path):
    """The defect itself: a fresh process without the plugin cannot load."""
    make_runner(tmp_path, max_epochs=1).train()
    result = run_python(
        'import torch\n'
        f'torch.load({str(tmp_path / "epoch_1.pth")!r}, map_location="cpu")')
    assert result.returncode != 0
    assert 'Weights only load failed' in result.stderr


def test_fresh_process_with_plugin_loads_checkpoint(tmp_path):
    """As `mim test` does: no HistoryBuffer exists yet in the process."""
    make_runner(tmp_path, max_epochs=1).train()
    result = run_python(
        'import re2tal_mm, torch\n'
        f'ckpt = torch.load({str(tmp_path / "epoch_1.pth")!r}, '
        'map_location="cpu")\n'
        'print(ckpt["meta"]["epoch"])')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == '1'


class Foreign:
    pass


def test_checkpoint_with_foreign_global_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'meta': {}, 'state_dict': {}, 'payload': Foreign()}, path)
    from mmengine.runner import load_checkpoint
    with pytest.raises(pickle.UnpicklingError, match='Foreign'):
        load_checkpoint(nn.Linear(1, 1), str(path), map_location='cpu')


class SneakyGetattr:
    """Pickles as getattr(HistoryBuffer, '__class__'): not a statistics
    method."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return getattr, (HistoryBuffer, '__class__')


def test_getattr_stand_in_is_narrow(tmp_path):
    path = tmp_path / 'sneaky.pth'
    torch.save({'meta': {}, 'payload': SneakyGetattr()}, path)
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        torch.load(path, map_location='cpu')


def test_importlib_metadata_is_declared_for_mmaction():
    """mmaction2 1.2.0 imports importlib_metadata without declaring it."""
    import importlib.metadata as md
    mmaction_requires = ' '.join(md.requires('mmaction2') or [])
    ours = ' '.join(md.requires('re2tal-mm') or [])
    assert 'importlib_metadata' in ours or 'importlib-metadata' in ours
    if 'importlib' not in mmaction_requires:  # the defect is present
        import mmaction.utils.dependency  # noqa: F401  (needs it)


def test_cpu_ddp_device_ids_error_says_what_to_set(monkeypatch):
    """MMEngine's Runner.wrap_model passes device_ids=[LOCAL_RANK] to its
    DDP wrapper; for a CPU model torch's DDP refuses them with a message
    that names no setting. The patch, on the Runner's wrapping only, adds
    what to set (one gloo process: the same error as under torchrun)."""
    import torch.distributed as dist
    from mmengine.config import Config
    from mmengine.model import MMDistributedDataParallel
    from mmengine.runner import runner as runner_module

    from re2tal_mm.engine import ReversibleDistributedDataParallel

    from .conftest import free_port
    monkeypatch.setenv('LOCAL_RANK', '0')
    # the model stays on the CPU, even where CUDA is available
    monkeypatch.setattr(runner_module, 'get_device', lambda: 'cpu')
    runner = object.__new__(Runner)  # the state wrap_model reads
    runner._distributed, runner.cfg = True, Config()
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))
    dist.init_process_group('gloo', rank=0, world_size=1)
    try:
        with pytest.raises(ValueError) as info:
            runner.wrap_model(None, nn.Linear(2, 2))
        text = str(info.value)
        assert 'got device_ids [0]' in text  # torch's own message, kept
        assert 'DDP wrapper (MMDistributedDataParallel here)' in text
        assert ("model_wrapper_cfg=dict(type='ReversibleDistributedData"
                "Parallel')") in text
        assert 'rewire_mode=None' in text
        # a configured wrapper is named too
        with pytest.raises(ValueError, match=r'\(mmengine\.MMDistributed'
                           r'DataParallel here\)'):
            runner.wrap_model(dict(type='mmengine.MMDistributedDataParallel'),
                              nn.Linear(2, 2))
        # without the patch: torch's message alone, naming no setting
        original = Runner.wrap_model.__wrapped__
        with pytest.raises(ValueError) as bare:
            original(runner, None, nn.Linear(2, 2))
        assert 'got device_ids [0]' in str(bare.value)
        assert 'model_wrapper_cfg' not in str(bare.value)
        # scoped to the Runner: a DDP wrapper built elsewhere is untouched
        assert not hasattr(MMDistributedDataParallel.__init__,
                           'patched_by_re2tal')
        with pytest.raises(ValueError) as direct:
            MMDistributedDataParallel(module=nn.Linear(2, 2), device_ids=[0])
        assert 'model_wrapper_cfg' not in str(direct.value)
        # the wrapper it names wraps the CPU model through the Runner
        model = runner.wrap_model(
            dict(type='ReversibleDistributedDataParallel', rewire_mode=None),
            nn.Linear(2, 2))
        assert isinstance(model, ReversibleDistributedDataParallel)
        assert model.device_ids is None
        # any other error goes through unchanged
        with pytest.raises(RuntimeError) as other:
            runner.wrap_model(dict(type='ReversibleDistributedDataParallel',
                                   rewire_mode=None),
                              nn.Linear(2, 2).requires_grad_(False))
        assert 'model_wrapper_cfg' not in str(other.value)
    finally:
        dist.destroy_process_group()

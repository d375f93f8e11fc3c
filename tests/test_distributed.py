"""torchrun + MMAction2's tools/train.py --launcher pytorch (gloo on CPU)
trains the demo config with ReversibleDistributedDataParallel; both ranks end
with identical parameters."""
import os
import os.path as osp
import subprocess
import sys

import torch

import mmaction
from .conftest import REPO, free_port

CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
TRAIN = osp.join(osp.dirname(mmaction.__file__), '.mim', 'tools', 'train.py')


def test_torchrun_two_ranks_identical_params(tmp_path):
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    data = tmp_path / 'syn'
    make_synthetic_dataset(str(data), num_videos=4, num_classes=4, seed=0,
                           min_duration=8, max_duration=12, val_ratio=0)
    dump = tmp_path / 'dump'
    dump.mkdir()
    cfg = tmp_path / 'dist_config.py'
    cfg.write_text(f"""
_base_ = [{CONFIG!r}]
custom_imports = dict(imports=['re2tal_mm', 'dump_params_hook'],
                      allow_failed_imports=False)
model_wrapper_cfg = dict(type='ReversibleDistributedDataParallel')
custom_hooks = [dict(type='RewireBackboneHook', mode='reversible'),
                dict(type='DumpParamsHook')]
train_cfg = dict(max_epochs=1, val_interval=100)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
train_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file='{data}/annotations.json',
                 data_prefix=dict(video='{data}/videos')))
default_hooks = dict(checkpoint=dict(interval=100),
                     logger=dict(interval=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
""")
    work = tmp_path / 'work'
    torchrun = osp.join(osp.dirname(sys.executable), 'torchrun')
    cmd = [torchrun, '--nproc_per_node=2', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}', TRAIN, str(cfg),
           '--launcher', 'pytorch', '--work-dir', str(work)]
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               RE2TAL_DUMP_DIR=str(dump),
               PYTHONPATH=os.pathsep.join(
                   [osp.join(REPO, 'tests', 'data'), REPO,
                    os.environ.get('PYTHONPATH', '')]))
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    log = res.stdout[-4000:] + res.stderr[-4000:]
    assert res.returncode == 0, log
    r0 = torch.load(dump / 'rank0.pth', weights_only=False)
    r1 = torch.load(dump / 'rank1.pth', weights_only=False)
    assert r0['wrapper'] == r1['wrapper'] == \
        'ReversibleDistributedDataParallel'
    assert r0['iter'] == r1['iter'] == 2  # 4 videos / (2 ranks x 1)
    assert r0['params'].keys() == r1['params'].keys()
    assert any(k.startswith('backbone.') for k in r0['params'])
    for k in r0['params']:
        assert torch.equal(r0['init'][k], r1['init'][k]), k  # DDP broadcast
        assert torch.equal(r0['params'][k], r1['params'][k]), k
    # not vacuous: training moved the parameters
    changed = [k for k in r0['params']
               if not torch.equal(r0['params'][k], r0['init'][k])]
    assert len(changed) > len(r0['params']) // 2
    assert any(k.startswith('backbone.') for k in changed)

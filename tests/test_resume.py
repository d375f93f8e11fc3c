"""Interrupted demo training continues from its last checkpoint with
``mim train mmaction2 <config> --resume``."""
import os
import os.path as osp
import subprocess
import sys

import torch

from .conftest import REPO

CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')


def mim_train(cfg, work, cwd, *extra):
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    res = subprocess.run(
        [mim, 'train', 'mmaction2', str(cfg), '--gpus', '0', '--work-dir',
         str(work), *extra], cwd=cwd, capture_output=True, text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES=''))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res.stdout + res.stderr


def test_mim_train_resume(tmp_path):
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    data = tmp_path / 'syn'
    # 4 training videos, batch 2: 2 iterations per epoch
    make_synthetic_dataset(str(data), num_videos=4, num_classes=4, seed=0,
                           min_duration=8, max_duration=12, val_ratio=0)
    cfg = tmp_path / 'resume_config.py'
    cfg.write_text(f"""
_base_ = [{CONFIG!r}]
train_cfg = dict(max_epochs=2, val_interval=100)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file='{data}/annotations.json',
                 data_prefix=dict(video='{data}/videos')))
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3),
                     logger=dict(interval=1))
""")
    work = tmp_path / 'work'
    # the "interrupted" run: stops after its first epoch
    mim_train(cfg, work, tmp_path, '--cfg-options', 'train_cfg.max_epochs=1')
    assert (work / 'epoch_1.pth').exists()
    assert not (work / 'epoch_2.pth').exists()
    first = torch.load(work / 'epoch_1.pth', map_location='cpu',
                       weights_only=False)
    assert first['meta']['epoch'] == 1 and first['meta']['iter'] == 2
    assert (work / 'last_checkpoint').read_text().strip().endswith(
        'epoch_1.pth')

    log = mim_train(cfg, work, tmp_path, '--resume')
    assert 'resumed' in log.lower(), log[-3000:]
    assert 'epoch_1.pth' in log
    # the second run trained epoch 2 only, its iteration counter continuing
    assert 'Epoch(train) [1]' not in log
    assert 'Epoch(train) [2][1/2]' in log
    second = torch.load(work / 'epoch_2.pth', map_location='cpu',
                        weights_only=False)
    assert second['meta']['epoch'] == 2 and second['meta']['iter'] == 4
    # it started from epoch 1's weights, then moved them
    changed = [k for k, v in second['state_dict'].items()
               if v.is_floating_point()
               and not torch.equal(v, first['state_dict'][k])]
    assert changed

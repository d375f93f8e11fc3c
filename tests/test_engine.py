"""Runner integration: the hook with a stock MMAction2 config, and DDP."""
import datetime
import os
import os.path as osp

import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.rewiring import is_rewired, rewired_stages

from mmaction.registry import DATASETS
from mmaction.structures import ActionDataSample
from .conftest import free_port, spawn_and_wait

DATA = osp.join(osp.dirname(__file__), 'data')


@DATASETS.register_module(force=True)
class TinySyntheticVideos(torch.utils.data.Dataset):
    """Random uint8 clips already in ``NCTHW`` with a label each."""

    def __init__(self, num_samples=4, shape=(1, 3, 4, 32, 32),
                 num_classes=2):
        self.num_samples = num_samples
        self.shape = shape
        self.num_classes = num_classes
        self.metainfo = dict(classes=list(range(num_classes)))

    def __len__(self):
        return self.num_samples

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(idx)
        inputs = torch.randint(0, 256, self.shape, generator=g,
                               dtype=torch.uint8)
        sample = ActionDataSample().set_gt_label(idx % self.num_classes)
        return dict(inputs=inputs, data_samples=sample)


def test_stock_swin_config_trains_rewired(tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(DATA, 'tiny_swin_rewired_config.py'))
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    backbone = runner.model.backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    runner.train()
    assert runner.iter == 2
    assert is_rewired(runner.model)
    assert len(rewired_stages(backbone)) == 4
    assert list(before) == list(backbone.state_dict())
    assert any(not torch.equal(before[k], v)
               for k, v in backbone.state_dict().items())
    hooks = {type(h).__name__: h for h in runner.hooks}
    report = hooks['RewireBackboneHook'].report
    assert len(report.stages) == 4 and report.frozen == ()
    monitor = hooks['InversionMonitorHook']
    assert len(monitor.last_errors) == 4
    # what the non-reversible layers keep was measured on the first iteration
    probe = hooks['ReversibleMemoryProbeHook']
    assert probe.kept_bytes['backbone.patch_embed'][0] == 'kept'
    assert probe.kept_bytes['backbone.layers.0.downsample'][1] > 0
    assert all(0 <= e < 1e-4 for e in monitor.last_errors.values())
    assert all(f'train/inversion_error/{name}' in
               runner.message_hub.log_scalars for name in monitor.last_errors)


def small_slowonly():
    from mmaction.models.backbones import ResNet3d
    return ResNet3d(depth=50, pretrained=None, pretrained2d=False,
                    base_channels=4, num_stages=2, out_indices=(1, ),
                    stage_blocks=(3, 3), spatial_strides=(1, 2),
                    temporal_strides=(1, 1), dilations=(1, 1),
                    inflate=((1, 1, 1), (1, 1, 1)), conv1_kernel=(1, 3, 3),
                    norm_eval=True)


def ddp_worker(rank, world, port, batch, out_path):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a bounded wait: a rendezvous or collective that cannot complete
    # raises instead of hanging
    torch.distributed.init_process_group(
        'gloo', rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60))
    from re2tal_mm.engine import ReversibleDistributedDataParallel
    torch.manual_seed(0)
    model = small_slowonly().double()
    model.train()
    ddp = ReversibleDistributedDataParallel(model)
    shard = batch.chunk(world)[rank]
    ddp(shard).sum().backward()
    if rank == 0:
        torch.save([p.grad for p in model.parameters()], out_path)
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_equal_single_process(tmp_path):
    from re2tal_mm.rewiring import rewire
    torch.manual_seed(1)
    batch = torch.randn(4, 3, 2, 16, 16, dtype=torch.float64)
    out = str(tmp_path / 'grads.pt')
    spawn_and_wait(ddp_worker, (2, free_port(), batch, out), timeout=120,
                   attempts=2)
    torch.manual_seed(0)
    model = small_slowonly().double()
    model.train()
    rewire(model)
    # DDP averages gradients over processes: mean of the per-shard sums
    (model(batch).sum() / 2).backward()
    ddp_grads = torch.load(out)
    assert len(ddp_grads) == len(list(model.parameters()))
    for g, p in zip(ddp_grads, model.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-9, atol=1e-12)

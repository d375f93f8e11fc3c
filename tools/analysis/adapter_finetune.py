"""Temporal adapters on the synthetic video dataset: a tiny ViT trained
plain, then fine-tuned three ways, each reporting mAP and trainable
parameters.

1. ``pretrain``: a tiny ``ClipBatchedViT`` (VideoMAE-style ViT over
   8-frame clips) and the demo's detector trained end to end, plain;
2. from its checkpoint (``load_from``: the temporal adapters are new):

   * ``reversible+adapters``: backbone frozen, temporal adapters in every
     block, rewired to one reversible stage (``attention='sdpa'``);
   * ``adatad``: the same, not rewired (frozen backbone + adapters);
   * ``full``: plain full fine-tuning (no adapter, nothing frozen).

The detector (neck and head) trains in every variant. The config is the
``make demo`` one (``configs/re2tal/re2tal_swin-demo-*.py``) with the
backbone swapped. Sized for one CPU core (about 10 minutes by default)::

    OMP_NUM_THREADS=1 python tools/analysis/adapter_finetune.py
"""
import argparse
import json
import os
import os.path as osp
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
EMBED = 48
VARIANTS = {
    'reversible+adapters': dict(adapters=True,
                                rewire=dict(mode='reversible',
                                            attention='sdpa')),
    'adatad': dict(adapters=True, rewire=None),
    'full': dict(adapters=False, rewire=None),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=osp.join(
        REPO, 'work_dirs', 'adapter_finetune'))
    parser.add_argument('--videos', type=int, default=48)
    parser.add_argument('--pretrain-epochs', type=int, default=16)
    parser.add_argument('--finetune-epochs', type=int, default=10)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=list(VARIANTS))
    return parser.parse_args()


def make_cfg(args, name, epochs, adapters, rewire, load_from=None):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    cfg.data_root = osp.join(args.work_dir, f'data{args.videos}')
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.model.backbone = dict(
        type='ClipBatchedViT', img_size=64, patch_size=8, embed_dims=EMBED,
        depth=4, num_heads=3, mlp_ratio=4, qkv_bias=True, num_frames=8,
        tubelet_size=2, drop_path_rate=0.1, use_mean_pooling=False,
        temporal_adapter=dict(reduction=4, kernel_size=3) if adapters
        else None)
    cfg.model.rewire = rewire
    cfg.model.neck.in_channels = EMBED
    cfg.load_from = load_from
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs,
                         val_interval=epochs)
    cfg.param_scheduler[1].update(T_max=epochs)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].update(num_workers=0, persistent_workers=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=epochs, max_keep_ckpts=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=20)
    cfg.log_level = 'WARNING'
    return cfg


def run(cfg):
    """Train, validate; returns (metrics, trainable backbone parameters,
    trainable parameters, seconds)."""
    from mmengine.registry import RUNNERS
    start = time.time()
    runner = RUNNERS.build(cfg)  # the config's DataRootRunner
    model = runner.train()
    metrics = runner.val()
    params = [(n, p.numel()) for n, p in model.named_parameters()
              if p.requires_grad]
    backbone = sum(k for n, k in params if n.startswith('backbone.'))
    return metrics, backbone, sum(k for _, k in params), \
        time.time() - start


def main():
    import torch

    import re2tal_mm  # noqa: F401
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    args = parse_args()
    torch.set_num_threads(1)
    data = osp.join(args.work_dir, f'data{args.videos}')
    if not osp.exists(osp.join(data, 'annotations.json')):
        make_synthetic_dataset(data, num_videos=args.videos, seed=0)
    rows = {}
    cfg = make_cfg(args, 'pretrain', args.pretrain_epochs, False, None)
    rows['pretrain (plain)'] = run(cfg)
    ckpt = osp.join(cfg.work_dir, f'epoch_{args.pretrain_epochs}.pth')
    for name in args.variants:
        v = VARIANTS[name]
        cfg = make_cfg(args, name, args.finetune_epochs, v['adapters'],
                       v['rewire'], load_from=ckpt)
        rows[name] = run(cfg)
    lines = ['| stage | backbone trainable params | all trainable params | '
             'mAP@0.5 | avg mAP (0.3:0.7) | seconds |',
             '|---|---|---|---|---|---|']
    summary = {}
    for name, (metrics, backbone, total, sec) in rows.items():
        m50 = next((v for k, v in metrics.items() if '@' in k and
                    float(k.rsplit('@', 1)[1]) == 0.5), float('nan'))
        avg = next((v for k, v in metrics.items()
                    if 'avg' in k or 'average' in k), float('nan'))
        summary[name] = dict(metrics=metrics, backbone_trainable=backbone,
                             trainable=total, seconds=sec)
        lines.append(f'| {name} | {backbone:,} | {total:,} | {m50:.3f} | '
                     f'{avg:.3f} | {sec:.0f} |')
    table = '\n'.join(lines)
    print(table)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    with open(osp.join(args.work_dir, 'summary.md'), 'w') as f:
        f.write(table + '\n')


if __name__ == '__main__':
    main()

"""Convert an OpenTAD checkpoint into a checkpoint of our model.

Reads an OpenTAD TAL checkpoint (``{"epoch", "state_dict", "optimizer",
"scheduler", "state_dict_ema"}``, keys with DDP's ``module.`` prefix) or a
bare backbone / recognizer state dict (e.g. the released K400-finetuned
``invswin-tiny-p244-w877_kinetics400_pre_k400_ft_e30.pth``), and writes an
MMEngine checkpoint (``meta``, ``state_dict``) that ``mim test``,
``load_from``, ``init_localizer`` and ``localize_video`` use as any other.
The EMA weights are taken by default (what OpenTAD's test evaluates);
``meta['re2tal_rewiring']`` records the function OpenTAD's backbone computes,
so every path that builds the model runs it so.

It prints what it mapped and what it left out (optimizer, scheduler), and
stops on a tensor it cannot place, naming it. With ``--config`` the result
is loaded (strictly) into the model of that config, so a wrong config or
checkpoint is caught here and not at test time.

Examples::

    python tools/convert_opentad_checkpoint.py epoch_119.pth re2tal_swin.pth \\
        --config configs/re2tal/re2tal_swin-tiny-p244-w877_opentad_thumos14.py
"""
import argparse
import sys

import torch

from re2tal_mm.apis.opentad.checkpoint import convert_checkpoint
from re2tal_mm.apis.opentad.keys import UnplacedTensorError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='the OpenTAD checkpoint')
    parser.add_argument('dst', help='our checkpoint to write')
    parser.add_argument('--no-ema', action='store_true',
                        help='take state_dict, not state_dict_ema')
    parser.add_argument('--config',
                        help='check the result loads strictly into the '
                        "model of this config (ours)")
    return parser.parse_args(argv)


def check_loads(config: str, checkpoint: dict) -> None:
    """Load ``checkpoint`` strictly into the model of ``config``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import re2tal_mm  # noqa: F401 - registers the components
    from re2tal_mm.rewiring import apply_rewiring

    from mmaction.registry import MODELS
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    model_cfg = cfg.model.copy()
    spec = checkpoint['meta'].get('re2tal_rewiring', model_cfg.get('rewire'))
    model_cfg['rewire'] = None
    model = MODELS.build(model_cfg)
    if model.backbone is not None and spec:
        apply_rewiring(model.backbone, spec)
    model.load_state_dict(checkpoint['state_dict'], strict=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    src = torch.load(args.src, map_location='cpu', weights_only=True)
    try:
        ours, report = convert_checkpoint(src, ema=not args.no_ema,
                                          source=args.src)
    except UnplacedTensorError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'read {args.src}: {report["taken"]}, kinds {report["kinds"]}')
    print(f'mapped {report["mapped"]} tensors')
    if report['dropped']:
        print(f'dropped {len(report["dropped"])} (no counterpart on '
              f'purpose): {", ".join(report["dropped"])}')
    if report['training_state']:
        print('not carried over (training state): '
              + ', '.join(report['training_state']))
    print(f'meta: {ours["meta"]}')
    if args.config:
        check_loads(args.config, ours)
        print(f'loads strictly into the model of {args.config}')
    torch.save(ours, args.dst)
    print(f'written {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

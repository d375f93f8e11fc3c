"""One training step of a config's own model, for ``benchmark_memory.py
--config``.

The model is built from the config exactly as ``mim train`` builds it
(``MODELS.build(cfg.model)``: its backbone, ``rewire`` spec with the memory
preset, ``frozen_backbone_norms``, neck and head); a step is the
localizer's ``loss`` on one random window (batch 1, float32: the configs'
AMP is a CUDA feature) with one ground-truth segment, then ``backward`` of
the summed losses. Frames and crop default to the config's own
(``num_frames``, ``crop_size``).

Where a CPU cannot run the config's own frames and size, the benchmark
measures two reduced windows (same crop, two frame counts) and gives the
figure at the config's size by shape arithmetic (:func:`extrapolate`: the
part that grows with the input scales with its frames x crop^2), beside the
analytic floor of the config's model at its own shapes
(:func:`config_floor`: two streams per rewired stage, the input clip, one
gradient per trainable parameter; shapes from a forward on the ``meta``
device).
"""
import argparse
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from re2tal_mm.reversible import RewiredStage
from re2tal_mm.rewiring import rewired_stages


def load_config(path: str, cfg_options: Optional[List[str]] = None):
    """The config at ``path`` with ``--cfg-options`` style overrides
    (``key=value`` strings) merged."""
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(path)
    if cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--o', *cfg_options]).o)
    return cfg


def own_shape(cfg) -> Tuple[int, int]:
    """The config's own training window: ``(frames, crop)`` from its
    ``num_frames`` / ``crop_size``, or else from its training pipeline
    (``TALWindowSample.num_steps``, the last fixed-size ``Resize`` /
    ``RandomCrop`` / ``CenterCrop``)."""
    if cfg.model.get('backbone') is None:
        raise ValueError('a feature-mode config has no backbone: nothing '
                         'to measure (its input is precomputed features)')
    steps = size = None
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] == 'TALWindowSample':
            steps = t['num_steps']
        elif t['type'] in ('RandomCrop', 'CenterCrop'):
            size = t.get('size', t.get('crop_size'))
        elif t['type'] == 'Resize' and t.get('keep_ratio') is False:
            size = t['scale'][0]
    frames = cfg.get('num_frames', steps)
    crop = cfg.get('crop_size', size)
    if frames is None or crop is None:
        raise ValueError('cannot tell the window: set --frames and --size')
    return int(frames), int(crop)


def preset(cfg) -> str:
    """The memory preset the config's ``model.rewire`` names, ``'none'``
    when it is not rewired, or ``'balanced (implicit)'``."""
    spec = cfg.model.get('rewire')
    if not spec:
        return 'none'
    return spec.get('memory', 'balanced (implicit)')


class LocalizerStep(nn.Module):
    """The summed training losses of ``localizer`` on a window, one
    ground-truth segment in its second quarter (label 0)."""

    def __init__(self, localizer: nn.Module):
        super().__init__()
        self.localizer = localizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mmengine.structures import InstanceData

        from mmaction.structures import ActionDataSample
        sample = ActionDataSample()
        sample.set_metainfo(dict(fps=1.0))
        steps = x.shape[2]
        sample.gt_instances = InstanceData(
            segments=torch.tensor([[0.25 * steps, 0.5 * steps]]),
            labels=torch.tensor([0]))
        losses = self.localizer(x, [sample] * x.shape[0], mode='loss')
        return sum(v if torch.is_tensor(v) else sum(v)
                   for k, v in losses.items() if 'loss' in k)


def build_config_model(cfg) -> nn.Module:
    """``cfg.model`` built as the runner builds it, in train mode, wrapped
    in :class:`LocalizerStep`."""
    from mmengine.registry import init_default_scope

    import re2tal_mm  # noqa: F401  (registers the plugin's modules)

    from mmaction.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    model = MODELS.build(cfg.model)
    return LocalizerStep(model).train()


class ShapeRecordingStage(RewiredStage):
    """A :class:`RewiredStage` that notes the size of each chain input in
    ``self.sizes`` (given to the stages of one model for one forward by
    :func:`stream_floor`, never to the class)."""

    def __call__(self, functions, x, tail=None):
        self.sizes.append(x.numel())
        return super().__call__(functions, x, tail)


def stream_floor(model: nn.Module, forward, x: torch.Tensor) -> Dict:
    """Bytes a reversible step of ``model`` cannot do without: two float32
    streams per rewired stage (their shapes seen while ``forward(x)`` runs,
    on the ``meta`` device), the input ``x`` and one gradient per trainable
    parameter. Used by ``benchmark_memory.py`` for a backbone and here for
    a config's whole model."""
    sizes, stages = [], rewired_stages(model)
    for stage in stages:  # these stages record, for this forward only
        stage.__class__, stage.sizes = ShapeRecordingStage, sizes
    try:
        with torch.no_grad():
            forward(x)
    finally:
        for stage in stages:
            stage.__class__ = RewiredStage
            del stage.sizes
    grads = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mib = 4 / 2**20
    streams = 2 * sum(sizes) * mib
    return dict(streams_mib=streams, input_mib=x.numel() * mib,
                grads_mib=grads * mib,
                floor_mib=streams + x.numel() * mib + grads * mib)


def config_floor(cfg, frames: int, size: int, batch: int = 1) -> Dict:
    """The analytic floor of a step of the config's model (backbone, neck
    and head: :func:`stream_floor`)."""
    model = build_config_model(cfg).to('meta')
    x = torch.empty(batch, 3, frames, size, size, device='meta')
    return stream_floor(model, model.localizer.backbone, x)


def extrapolate(rows: List[Dict], cfg) -> Dict:
    """The step at the config's own frames and size: measured when a row
    is at that size, otherwise shape arithmetic from two rows at the same
    crop and different frames: a line ``a + b * frames`` through them
    (``a``: parameter gradients, the detector at the config's ``feat_len``;
    ``b``: the backbone's activations, which grow with its tokens), taken
    to the own size as ``a + b * frames * (size / crop)^2``. The floor at
    the own shapes (:func:`config_floor`) is given beside it."""
    frames, size = own_shape(cfg)
    for row in rows:
        if (row['frames'], row['size']) == (frames, size):
            return dict(own_frames=frames, own_size=size,
                        own_how='measured', own_mib=row['peak_mib'],
                        own_floor_mib=row['floor_mib'])
    (f1, p1), (f2, p2) = sorted((r['frames'], r['peak_mib']) for r in rows)
    slope = (p2 - p1) / (f2 - f1)
    crop = rows[0]['size']
    own = p1 - slope * f1 + slope * frames * (size / crop)**2
    floor = config_floor(cfg, frames, size)['floor_mib']
    return dict(own_frames=frames, own_size=size,
                own_how=f'arithmetic from {f1}, {f2} frames at {crop}',
                own_mib=own, own_floor_mib=floor)


def config_table(rows: List[Dict]) -> str:
    """Markdown: per config, the preset, the measured step and the step at
    the config's own frames and size."""
    lines = ['| config | preset | measured at | peak MiB | floor MiB | '
             'own frames x size | peak MiB at own size | floor MiB there | '
             'how |', '|---|---|---|---:|---:|---|---:|---:|---|']
    for r in rows:
        lines.append(
            f'| {r["config"]} | {r["preset"]} | {r["frames"]}x{r["size"]} '
            f'| {r["peak_mib"]:.0f} | {r["floor_mib"]:.0f} | '
            f'{r["own_frames"]}x{r["own_size"]} | {r["own_mib"]:.0f} | '
            f'{r["own_floor_mib"]:.0f} | {r["own_how"]} |')
    return '\n'.join(lines)

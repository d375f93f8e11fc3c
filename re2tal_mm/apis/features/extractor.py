"""The feature extractor: a config's backbone with its weights, rewiring,
pixel normalization and the localizer's spatial pooling
(:class:`BackboneFeatures`, :func:`build_feature_extractor`).
"""
import copy
import hashlib
import json
import os.path as osp
from typing import Optional, Sequence, Union

import torch
from torch import nn

from re2tal_mm.models.pooling import SPATIAL_POOLS, pool_backbone_outputs
from re2tal_mm.rewiring.spec import config_type_name

#: Hex digits of a file's sha256 kept in manifests (OpenMMLab's model zoo
#: names checkpoints with as many).
SHORT_SHA = 8


class BackboneFeatures(nn.Module):
    """A backbone and the spatial pooling of the localizer.

    Pooling is :func:`~re2tal_mm.models.pooling.pool_backbone_outputs`, as
    in the localizer, so features extracted here are what a localizer with
    the same backbone and ``spatial_pool`` computes before its neck.

    Args:
        backbone (nn.Module): An MMAction2 backbone.
        spatial_pool (str): ``'avg'``, ``'max'`` or ``'avgmax'`` (both,
            concatenated: twice the channels). Defaults to ``'avg'``.
        frames_as_batch (bool): The backbone is a 2D image network: frames
            are folded into the batch and its outputs unfolded back.
            Defaults to False.
        mean (Sequence[float], optional): Pixel mean (RGB, 0-255) subtracted
            before the backbone. Defaults to None (no normalization).
        std (Sequence[float], optional): Pixel std. Defaults to None.
        to_rgb (bool): Swap the channel order first (MMAction2's
            ``ActionDataPreprocessor(to_rgb=True)``; frames are decoded as
            RGB). Defaults to False.
    """

    def __init__(self, backbone: nn.Module, spatial_pool: str = 'avg',
                 frames_as_batch: bool = False,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 to_rgb: bool = False) -> None:
        super().__init__()
        if spatial_pool not in SPATIAL_POOLS:
            raise ValueError(f'spatial_pool must be one of {SPATIAL_POOLS}, '
                             f'got {spatial_pool!r}')
        self.backbone = backbone
        self.spatial_pool = spatial_pool
        self.frames_as_batch = frames_as_batch
        self.to_rgb = to_rgb
        if (mean is None) != (std is None):
            raise ValueError('give both mean and std, or neither')
        self.register_buffer(
            'mean', None if mean is None else
            torch.tensor(mean, dtype=torch.float32).view(-1), False)
        self.register_buffer(
            'std', None if std is None else
            torch.tensor(std, dtype=torch.float32).view(-1), False)
        self.info: dict = {}

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, H, W, 3)`` uint8 RGB clips to normalized
        ``(B, 3, T, H, W)`` float32 inputs."""
        x = clips.to(self._device()).permute(0, 4, 1, 2, 3).float()
        if self.to_rgb:
            x = x.flip(1)
        if self.mean is not None:
            x = (x - self.mean.view(1, -1, 1, 1, 1)) / \
                self.std.view(1, -1, 1, 1, 1)
        return x

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device('cpu')

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` inputs to ``(B, C, T')`` features."""
        x = inputs
        if self.frames_as_batch:
            x = x.transpose(1, 2).flatten(0, 1)
        return pool_backbone_outputs(self.backbone(x), inputs.shape[0],
                                     self.spatial_pool, self.frames_as_batch)


def file_sha256(path: str, digits: Optional[int] = SHORT_SHA) -> str:
    """The sha256 of a file (streamed), its first ``digits`` hex digits.

    Args:
        path (str): The file.
        digits (int, optional): Hex digits kept. Defaults to
            :data:`SHORT_SHA` (8); None keeps all 64.
    """
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()[:digits]


def _no_pretrained(backbone_cfg) -> None:
    """No download of pretrained backbone weights (any nesting)."""
    if isinstance(backbone_cfg, dict):
        if 'pretrained' in backbone_cfg:
            backbone_cfg['pretrained'] = None
        for value in backbone_cfg.values():
            _no_pretrained(value)


def _spec_for_mode(mode: str, spec: Optional[dict]) -> Optional[dict]:
    """The spec of a rewiring ``mode`` (``'reversible'``, ``'autograd'``,
    ``'none'``): a mode keeps the options of the ``spec`` it replaces,
    ``'none'`` un-rewires."""
    return None if mode == 'none' else dict(spec or {}, mode=mode)


def _resolve_rewiring(cfg, trained, rewiring):
    """``(spec, source)`` for :func:`build_feature_extractor`'s
    ``rewiring`` of a recognizer's backbone."""
    from re2tal_mm.rewiring.spec import choose_rewiring
    if isinstance(rewiring, str):
        base, _ = choose_rewiring(cfg, trained, None)
        return _spec_for_mode(rewiring, base), 'explicit argument'
    return choose_rewiring(cfg, trained, rewiring)


def _rewire(module: nn.Module, spec: Optional[dict], source: str) -> None:
    """Rewire ``module`` as ``spec`` says (unless it already is) and log
    it."""
    from mmengine.logging import MMLogger

    from re2tal_mm.rewiring import apply_rewiring, rewiring_spec
    from re2tal_mm.rewiring.spec import describe
    if rewiring_spec(module) != spec:
        apply_rewiring(module, spec)
    MMLogger.get_current_instance().info(
        f'feature extraction: backbone {describe(spec)} (from {source})')


def build_feature_extractor(
        config,
        checkpoint: Optional[str] = None,
        device: str = 'cpu',
        rewiring: Optional[Union[str, dict, bool]] = None,
        spatial_pool: Optional[str] = None,
        seed: int = 0) -> BackboneFeatures:
    """The backbone of ``config`` with its weights, rewiring and pixel
    normalization, ready for :func:`extract_video_features`.

    A localizer config (``TemporalActionLocalizer`` with a backbone) is
    built by :func:`~re2tal_mm.apis.init_localizer` (rewired as the
    checkpoint records, else as the config says), and brings its
    ``spatial_pool`` and ``frames_as_batch``. Any other config is taken for
    an MMAction2 recognizer: ``model`` is built (no pretrained download),
    the checkpoint loaded with MMEngine's ``load_checkpoint``, and its
    ``backbone`` and ``data_preprocessor`` (mean, std, ``to_rgb``) used;
    ``cls_head`` is unused. A ``Recognizer2D`` (or an ``NCHW``
    preprocessor) runs frames as a batch.

    Args:
        config (str | Config): Recognizer or localizer config.
        checkpoint (str, optional): Checkpoint file; None (or ``'none'``)
            keeps the initialization, seeded by ``seed``. Defaults to None.
        device (str): Defaults to ``'cpu'``.
        rewiring (str | dict | bool, optional): ``'reversible'`` /
            ``'autograd'`` (the options of the recorded or configured spec
            are kept), ``'none'`` or False (un-rewired), or a spec dict.
            Defaults to None (as the checkpoint records, else the config).
        spatial_pool (str, optional): Defaults to None (the localizer's,
            ``'avg'`` for a recognizer).
        seed (int): Seed of the initialization (so that every process of a
            sharded extraction without checkpoint builds the same weights).
            Defaults to 0.

    Returns:
        BackboneFeatures: In eval mode on ``device``; ``info`` holds what
        the manifest records (config, model and backbone type, checkpoint
        and its sha256, seed, rewiring, spatial pooling, mean and std).
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    import re2tal_mm  # noqa: F401 - registers the components
    from re2tal_mm.apis.inference import init_localizer
    from re2tal_mm.rewiring import rewiring_spec
    from re2tal_mm.rewiring.spec import UNRECORDED, checkpoint_rewiring

    from mmaction.registry import MODELS
    config_name = config if isinstance(config, str) else \
        getattr(config, 'filename', None) or '<Config>'
    cfg = Config.fromfile(config) if isinstance(config, str) else \
        copy.deepcopy(config)
    if checkpoint in ('', 'none', 'None'):
        checkpoint = None
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    if 'model' not in cfg or not cfg.model.get('backbone'):
        raise ValueError(f'{config_name}: the config has no model.backbone '
                         '(a feature-mode localizer config has nothing to '
                         'extract features with)')
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    torch.manual_seed(seed)
    if config_type_name(cfg.model) == 'TemporalActionLocalizer':
        model = init_localizer(cfg, checkpoint, 'cpu', rewiring=None if
                               isinstance(rewiring, str) else rewiring)
        spec, source = rewiring_spec(model), 'init_localizer'
        if isinstance(rewiring, str):
            spec = _spec_for_mode(rewiring, spec)
            source = 'explicit argument'
            _rewire(model, spec, source)
        prep = model.data_preprocessor
        pool = spatial_pool or model.spatial_pool
        as_batch = model.frames_as_batch
    else:
        model_cfg = copy.deepcopy(cfg.model)
        _no_pretrained(model_cfg.backbone)
        model = MODELS.build(model_cfg)
        trained = UNRECORDED
        if checkpoint is not None:
            trained = checkpoint_rewiring(
                load_checkpoint(model, checkpoint, map_location='cpu'))
        spec, source = _resolve_rewiring(cfg, trained, rewiring)
        _rewire(model.backbone, spec, source)
        prep = model.data_preprocessor
        pool = spatial_pool or 'avg'
        as_batch = type(model).__name__ == 'Recognizer2D' or \
            getattr(prep, 'format_shape', 'NCTHW') == 'NCHW'
    enabled = getattr(prep, '_enable_normalize', False)
    mean = prep.mean.view(-1).tolist() if enabled else None
    std = prep.std.view(-1).tolist() if enabled else None
    extractor = BackboneFeatures(model.backbone, pool, as_batch, mean, std,
                                 bool(getattr(prep, 'to_rgb', False)))
    if enabled:  # float32 buffers: 123.675 would read 123.67500305...
        mean = [float(f'{v:.6g}') for v in mean]
        std = [float(f'{v:.6g}') for v in std]
    bb_cfg = cfg.model.backbone.to_dict() if hasattr(
        cfg.model.backbone, 'to_dict') else dict(cfg.model.backbone)
    extractor.info = dict(
        config=config_name, model=type(model).__name__,
        backbone=type(model.backbone).__name__,
        backbone_cfg_sha256=hashlib.sha256(json.dumps(
            bb_cfg, sort_keys=True, default=str).encode()).hexdigest()[
                :SHORT_SHA],
        checkpoint=checkpoint,
        checkpoint_sha256=None if checkpoint is None else
        file_sha256(checkpoint),
        seed=None if checkpoint is not None else seed,
        rewiring=spec, rewiring_source=source, spatial_pool=pool,
        frames_as_batch=as_batch, mean=mean, std=std,
        to_rgb=extractor.to_rgb)
    extractor.to(device)
    extractor.eval()
    return extractor

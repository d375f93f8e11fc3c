"""End-to-end temporal action localizer (backbone or features -> segments)."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from torch import nn

from re2tal_mm.rewiring import apply_rewiring
from re2tal_mm.structures import TemporalGrid
from re2tal_mm.structures.reporting import name_some

from mmaction.registry import MODELS
from .pooling import SPATIAL_POOLS, pool_backbone_outputs

#: the normalization layers ``frozen_backbone_norms`` freezes
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def _meta(sample, key, default=None):
    value = sample.metainfo.get(key, None)
    return default if value is None else value


def nest_bare_backbone_keys(model, state_dict, prefix, *args) -> None:
    """Load a bare backbone state_dict into the backbone (a
    ``load_state_dict`` pre-hook): when no key starts with ``backbone.``
    and most of the backbone's own keys are there without it, they are
    renamed ``backbone.<key>`` in place, with a warning."""
    if model.backbone is None:
        return
    own = model.backbone.state_dict(keep_vars=True)
    ours = prefix + 'backbone.'
    if any(k.startswith(ours) for k in state_dict) or \
            sum(prefix + k in state_dict for k in own) <= len(own) // 2:
        return
    for k in own:
        if prefix + k in state_dict:
            state_dict[ours + k] = state_dict.pop(prefix + k)
    MMLogger.get_current_instance().warning(
        'the checkpoint holds a bare backbone state_dict (keys without '
        '"backbone."): loaded into backbone.*')


def report_backbone_loading(model, state_dict, prefix, *args) -> None:
    """Load-time check of the backbone's tensors (a ``load_state_dict``
    pre-hook, after :func:`nest_bare_backbone_keys`): says how many were
    found, warns with the names of missing or mismatched ones (never a
    silent random initialisation; new temporal adapter tensors are
    reported as new). It changes nothing."""
    if model.backbone is None:
        return
    logger = MMLogger.get_current_instance()
    own = {k: v.shape for k, v in
           model.backbone.state_dict(keep_vars=True).items()}
    ours = prefix + 'backbone.'
    found = {k: state_dict[ours + k] for k in own if ours + k in state_dict}
    wrong = [k for k, v in found.items()
             if getattr(v, 'shape', None) != own[k]]
    missing = [k for k in own if k not in found]
    # temporal adapters are new to any pretrained backbone: said, not warned
    new = [k for k in missing if '.temporal_adapter.' in k]
    missing = [k for k in missing if k not in new]
    extra = [k[len(prefix):] for k in state_dict if k.startswith(prefix) and
             k.split('.', 1)[0] not in dict(model.named_children())]
    head = sum(k.startswith('cls_head.') for k in extra)
    logger.info(
        f'loading the backbone: {len(found) - len(wrong)}/{len(own)} tensors '
        f'from the checkpoint; {len(extra)} keys outside this model ignored'
        + (f' ({head} of the recognizer head cls_head.*)' if head else ''))
    if new:
        logger.info(f'{len(new)} temporal adapter tensors are new (not in '
                    'the checkpoint): they keep their initialisation')
    if missing or wrong:
        names = name_some(missing + wrong, limit=8, quote=False)
        logger.warning(
            f'{len(missing)} backbone tensors missing from the checkpoint '
            f'and {len(wrong)} of another shape (e.g. {names}): they keep '
            'their initialisation. Is the checkpoint of another backbone '
            'architecture or configuration?')


@MODELS.register_module()
class TemporalActionLocalizer(BaseModel):
    """ActionFormer-style localizer over an optional MMAction2 backbone.

    Without a backbone (feature mode) inputs are ``(B, C, T)`` feature
    sequences (per sample ``(C, T)``: ``stack_batch`` pads all but the first
    dim, so variable lengths batch with zero padding). With one (video
    mode) inputs are ``(B, C, T, H, W)`` frames (or ``(B, 1, C, T, H, W)``);
    every backbone output (SlowFast gives two) is pooled over space
    (``spatial_pool``), resampled to one temporal length and concatenated
    along channels. Grid-to-seconds uses :class:`TemporalGrid` built from
    each sample's ``fps``, stride and ``window_offset`` metainfo.

    Metainfo read per sample (written by ``PackTALInputs``): ``fps``
    (default 1), ``grid_stride`` (video frames between two input steps,
    default 1), ``window_offset`` (s, default 0), optional
    ``grid_center`` and ``valid_steps`` (unpadded input steps; default: the
    whole input). Predictions are not clipped to the window or the video:
    the per-video merge (``TALMetric``) clips them after its NMS.

    Args:
        neck (dict): Temporal encoder config (e.g. ``ActionFormerNeck``).
        head (dict): Localization head config (e.g. ``ActionFormerHead``).
        backbone (dict, optional): Any MMAction2 backbone config.
        rewire (dict, optional): Rewire the backbone at construction:
            ``dict(mode='reversible' | 'autograd', **options)`` as for
            :func:`~re2tal_mm.rewiring.rewire`. This is the primary path for
            localizer configs: the model is rewired before weights are loaded
            (``load_from``), before the model wrapper (DDP) is built, and in
            every process and tool that builds it from the config (``mim
            test``, ``init_localizer``, feature extraction). Defaults to None
            (not rewired).
        post_processor (dict, optional): ``TALPostProcessor`` config.
        data_preprocessor (dict, optional): Defaults to an
            ``ActionDataPreprocessor`` (``NCTHW`` in video mode).
        feat_len (int, optional): Detector length of the backbone output
            (``None`` keeps the backbone's own length).
        backbone_frames_per_call (int, optional): At inference, run the
            backbone on this many frames per call and concatenate in time
            (use a multiple of the backbone's temporal downsampling).
            Defaults to None (all frames in one call).
        split_calls_in_training (bool): Also split the backbone calls while
            training. Defaults to False.
        frames_as_batch (bool): The backbone is a 2D image network (TSN /
            TSM ResNets): frames are folded into the batch, ``(B*T, C, H,
            W)``, and its outputs unfolded back to ``(B, C', T)``. For TSM,
            ``T`` must be a multiple of the backbone's ``num_segments``.
            Defaults to False.
        spatial_pool (str): How backbone outputs are pooled over space:
            ``'avg'`` (the paper's choice), ``'max'`` (small actors in a large
            frame) or ``'avgmax'`` (both, concatenated along channels: the
            neck's ``in_channels`` doubles). Defaults to ``'avg'``.
        frozen_backbone_norms (bool): Keep every normalization layer of the
            backbone (BatchNorm, LayerNorm, GroupNorm) in eval mode and its
            affine parameters out of training (``requires_grad=False``), as
            OpenTAD's end-to-end recipes do (their ``norm_eval=True``).
            MMAction2's own ``norm_eval`` of a backbone only sets BatchNorm
            to eval mode and keeps training its parameters. Defaults to
            False.
        grid_center (float): Default grid centre (see ``TemporalGrid``) when a
            sample has no ``grid_center``. Defaults to 0.
        pad_divisor (int, optional): Detector length is padded to a multiple
            of it; defaults to the largest head stride.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self, neck: dict, head: dict,
                 backbone: Optional[dict] = None,
                 rewire: Optional[dict] = None,
                 post_processor: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 feat_len: Optional[int] = None,
                 backbone_frames_per_call: Optional[int] = None,
                 split_calls_in_training: bool = False,
                 frames_as_batch: bool = False, spatial_pool: str = 'avg',
                 frozen_backbone_norms: bool = False,
                 grid_center: float = 0., pad_divisor: Optional[int] = None,
                 init_cfg: Optional[dict] = None):
        if spatial_pool not in SPATIAL_POOLS:
            raise ValueError(f'spatial_pool must be one of {SPATIAL_POOLS}, '
                             f'got {spatial_pool!r}')
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='ActionDataPreprocessor',
                format_shape='NCTHW' if backbone is not None else 'NCHW')
        if isinstance(data_preprocessor, dict):  # mmaction scope, not root
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone) if backbone else None
        if rewire:
            if self.backbone is None:
                raise ValueError('rewire= needs a backbone; a feature-mode '
                                 'localizer has nothing to rewire')
            apply_rewiring(self.backbone, dict(rewire))
        self.frozen_backbone_norms = frozen_backbone_norms
        if frozen_backbone_norms:
            if self.backbone is None:
                raise ValueError('frozen_backbone_norms=True needs a '
                                 'backbone; a feature-mode localizer has '
                                 'none')
            for norm in self.backbone_norms():
                norm.requires_grad_(False)
        # in this order: the report counts the renamed keys
        self.register_load_state_dict_pre_hook(nest_bare_backbone_keys)
        self.register_load_state_dict_pre_hook(report_backbone_loading)
        self.neck, self.head = MODELS.build(neck), MODELS.build(head)
        self.post_processor = MODELS.build(post_processor or
                                           dict(type='TALPostProcessor'))
        self.spatial_pool = spatial_pool
        self.frames_as_batch = frames_as_batch
        self.feat_len = feat_len
        self.frames_per_call = backbone_frames_per_call
        self.split_calls_in_training = split_calls_in_training
        self.grid_center = grid_center
        self.pad_divisor = pad_divisor or max(self.head.strides)

    def backbone_norms(self):
        """The backbone's normalization layers (:data:`NORM_LAYERS`)."""
        return [m for m in self.backbone.modules()
                if isinstance(m, NORM_LAYERS)]

    def train(self, mode: bool = True):
        """As ``nn.Module.train``; frozen backbone norms stay in eval
        mode."""
        super().train(mode)
        if mode and self.frozen_backbone_norms:
            for norm in self.backbone_norms():
                norm.eval()
        return self

    # ----------------------------------------------------------- features
    def _pool(self, out, batch, length=None):
        return pool_backbone_outputs(out, batch, self.spatial_pool,
                                     self.frames_as_batch, length)

    def run_backbone(self, frames):
        """(B, C, T, H, W) frames to (B, C', T') spatially pooled features."""
        n = self.frames_per_call if (not self.training or
                                     self.split_calls_in_training) else None
        if n is None or frames.shape[2] <= n:
            # every output straight to feat_len (one resampling, not two)
            return self._pool(self._backbone(frames), frames.shape[0],
                              self.feat_len)
        return torch.cat([self._pool(self._backbone(c), frames.shape[0])
                          for c in frames.split(n, dim=2)], -1)

    def _backbone(self, frames):
        if self.frames_as_batch:
            frames = frames.transpose(1, 2).flatten(0, 1)
        return self.backbone(frames)

    def extract_feat(self, inputs, data_samples=None):
        """Detector-length features (B, C, T), valid mask (B, T) and the
        number of input steps per detector step."""
        if self.backbone is None:
            feats, in_len = inputs.float(), inputs.shape[-1]
        else:
            if inputs.ndim == 6:
                inputs = inputs.flatten(0, 1)
            in_len = inputs.shape[2]
            feats = self.run_backbone(inputs)
            if self.feat_len is not None and feats.shape[-1] != self.feat_len:
                feats = F.interpolate(feats, size=self.feat_len,
                                      mode='linear', align_corners=False)
        ratio = in_len / feats.shape[-1]
        T = feats.shape[-1]
        lens = [T] * feats.shape[0]
        if data_samples is not None:
            lens = [min(T, int(-(-_meta(s, 'valid_steps', in_len) // ratio)))
                    for s in data_samples]
        mask = torch.arange(T, device=feats.device)[None] < torch.tensor(
            lens, device=feats.device)[:, None]
        pad = (-T) % self.pad_divisor
        return F.pad(feats, (0, pad)), F.pad(mask, (0, pad)), ratio

    def grid(self, sample, ratio):
        """The :class:`TemporalGrid` of a sample's detector positions."""
        return TemporalGrid(
            fps=float(sample.metainfo.get('fps', 1.0)),
            stride=float(_meta(sample, 'grid_stride', 1.0)) * ratio,
            offset=float(sample.metainfo.get('window_offset', 0.0)),
            center=float(sample.metainfo.get('grid_center',
                                             self.grid_center)))

    # -------------------------------------------------------------- modes
    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}".')

    def _forward(self, inputs, data_samples=None):
        feats, mask, ratio = self.extract_feat(inputs, data_samples)
        feats, masks = self.neck(feats, mask)
        cls_outs, reg_outs = self.head(feats, masks)
        return cls_outs, reg_outs, masks, ratio

    def loss(self, inputs, data_samples):
        """Dict of losses; gt segments (seconds) are mapped to the grid."""
        cls_outs, reg_outs, masks, ratio = self._forward(inputs, data_samples)
        segs, labels = [], []
        for s in data_samples:
            gt = s.gt_instances
            seg = torch.as_tensor(gt.segments, dtype=torch.float32,
                                  device=masks[0].device).reshape(-1, 2)
            segs.append(self.grid(s, ratio).to_grid(seg))
            labels.append(torch.as_tensor(gt.labels, device=seg.device))
        return self.head.loss(cls_outs, reg_outs, masks, segs, labels)

    def predict(self, inputs, data_samples):
        """Samples with ``pred_instances`` in the video's seconds."""
        cls_outs, reg_outs, masks, ratio = self._forward(inputs, data_samples)
        scores, segs, valid = self.head.decode(cls_outs, reg_outs, masks)
        for i, s in enumerate(data_samples):
            # not clipped here: the merge of the video's windows clips to
            # the video after its NMS (TALMetric, localize_video)
            seg = self.grid(s, ratio).to_seconds(segs[i][valid[i]])
            s.pred_instances = self.post_processor(
                scores[i][valid[i]].detach(), seg.detach(),
                s.metainfo.get('video_id', None))
        return data_samples

"""Feature extraction with any (rewired) MMAction2 backbone.

A video is cut into sliding clips (``clip_len`` frames, ``frame_interval``
apart, a clip every ``stride`` frames); every clip goes through the backbone
of a recognizer or localizer config under ``torch.no_grad()``, its output is
pooled over space as :class:`~re2tal_mm.models.TemporalActionLocalizer`
pools it (``'avg'``, ``'max'``, ``'avgmax'``) and, optionally, over the
clip's time steps. The result is one ``T x C`` float32 array per video and a
manifest entry that says where each feature sits in the video:

    feature ``i`` stands for frame ``i * feature_stride + center_frames``,
    i.e. the time ``(i + center) * feature_stride / fps`` s,

the formula of :class:`~re2tal_mm.structures.TemporalGrid` that
:class:`~re2tal_mm.datasets.LoadTALFeature` applies when it reads the
manifest. ``tools/extract_features.py`` is the command line around
:func:`extract_video_features`.

Frame ``n`` of a video is shown from ``n / fps`` to ``(n + 1) / fps`` s, so
a clip of frames ``s, s + d, ..., s + (L - 1) d`` (``d`` the frame
interval) covers ``[s, s + L d)`` frames and its centre is ``s + L d / 2``.
"""
import copy
import hashlib
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from re2tal_mm.datasets.feature_manifest import MANIFEST_FORMAT
from re2tal_mm.models.pooling import SPATIAL_POOLS, pool_backbone_outputs

#: The grid formula, written into every entry for the reader's benefit.
GRID_FORMULA = 'time of feature i = (i + center) * feature_stride / fps s'
TEMPORAL_POOLS = ('avg', 'none')
VIDEO_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v',
                    '.mpg', '.mpeg', '.flv', '.wmv', '.3gp')
#: Hex digits of a file's sha256 kept in manifests (OpenMMLab's model zoo
#: names checkpoints with as many).
SHORT_SHA = 8


# ----------------------------------------------------------------- model
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


def _is_localizer(model_cfg) -> bool:
    kind = model_cfg.get('type', '')
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    return name.split('.')[-1] == 'TemporalActionLocalizer'


def _no_pretrained(backbone_cfg) -> None:
    """No download of pretrained backbone weights (any nesting)."""
    if isinstance(backbone_cfg, dict):
        if 'pretrained' in backbone_cfg:
            backbone_cfg['pretrained'] = None
        for value in backbone_cfg.values():
            _no_pretrained(value)


def _resolve_rewiring(cfg, trained, rewiring):
    """``(spec, source)`` for :func:`build_feature_extractor`'s
    ``rewiring``: a mode name keeps the options of the spec it replaces."""
    from re2tal_mm.rewiring.spec import choose_rewiring
    if isinstance(rewiring, str):
        if rewiring == 'none':
            return None, 'explicit argument'
        base, _ = choose_rewiring(cfg, trained, None)
        return dict(base or {}, mode=rewiring), 'explicit argument'
    return choose_rewiring(cfg, trained, rewiring)


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
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    import re2tal_mm  # noqa: F401 - registers the components
    from re2tal_mm.apis.inference import init_localizer
    from re2tal_mm.rewiring import apply_rewiring, rewiring_spec
    from re2tal_mm.rewiring.spec import (UNRECORDED, checkpoint_rewiring,
                                         describe)

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
    if _is_localizer(cfg.model):
        model = init_localizer(cfg, checkpoint, 'cpu', rewiring=None if
                               isinstance(rewiring, str) else rewiring)
        spec, source = rewiring_spec(model), 'init_localizer'
        if isinstance(rewiring, str):  # a mode: keep the spec's options
            spec = None if rewiring == 'none' else dict(spec or {},
                                                        mode=rewiring)
            source = 'explicit argument'
            if rewiring_spec(model) != spec:
                apply_rewiring(model, spec)
            MMLogger.get_current_instance().info(
                f'feature extraction: backbone {describe(spec)} (from '
                f'{source})')
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
        if rewiring_spec(model.backbone) != spec:
            apply_rewiring(model.backbone, spec)
        MMLogger.get_current_instance().info(
            f'feature extraction: backbone {describe(spec)} (from {source})')
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


# ---------------------------------------------------------------- clips
def clip_starts(total_frames: int, clip_len: int, frame_interval: int,
                stride: int) -> np.ndarray:
    """First frames of the sliding clips covering a video.

    Clips start every ``stride`` frames from frame 0; the last one is the
    first that reaches the last frame (frames past the end repeat the last
    frame). A video shorter than one clip gets one clip.

    Args:
        total_frames (int): Frames of the video.
        clip_len (int): Frames per clip.
        frame_interval (int): Frames between two sampled frames.
        stride (int): Frames between two clip starts.

    Returns:
        np.ndarray: int64 start frames.
    """
    if min(clip_len, frame_interval, stride, total_frames) < 1:
        raise ValueError('clip_len, frame_interval, stride and total_frames '
                         f'must be >= 1, got {clip_len}, {frame_interval}, '
                         f'{stride}, {total_frames}')
    last = (clip_len - 1) * frame_interval  # last sampled offset
    num = 1 + max(0, -(-(total_frames - 1 - last) // stride))
    return np.arange(num, dtype=np.int64) * stride


def clip_frame_indices(starts: np.ndarray, clip_len: int,
                       frame_interval: int, total_frames: int) -> np.ndarray:
    """``(num_clips, clip_len)`` frame indices (clamped to the video)."""
    inds = starts[:, None] + np.arange(clip_len) * frame_interval
    return np.minimum(inds, total_frames - 1)


def resize_crop(frame: np.ndarray, size: Optional[int]) -> np.ndarray:
    """Resize the shorter side of ``frame`` to ``size`` (bilinear, as
    MMAction2's ``Resize``) and crop the centre ``size x size``.

    Args:
        frame (np.ndarray): ``H x W x 3`` frame.
        size (int, optional): None or <= 0 keeps the frame as it is.
    """
    if not size or size <= 0:
        return frame
    import cv2
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    if (nh, nw) != (h, w):
        frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(frame[top:top + size, left:left + size])


def feature_grid(clip_len: int, frame_interval: int, stride: int,
                 temporal_pool: str = 'avg',
                 backbone_steps: Optional[int] = None) -> Dict[str, float]:
    """Where the features of a clip layout sit in the video.

    Args:
        clip_len (int): Frames per clip.
        frame_interval (int): Frames between two sampled frames.
        stride (int): Frames between two clip starts.
        temporal_pool (str): ``'avg'``: one feature per clip, at its centre;
            ``'none'``: the backbone's ``backbone_steps`` steps per clip,
            each at the centre of its share of the clip (clips must then
            tile the video: ``stride == clip_len * frame_interval``).
            Defaults to ``'avg'``.
        backbone_steps (int, optional): Time steps of the backbone's output
            per clip (``'none'`` only).

    Returns:
        dict: ``feature_stride`` (frames between two features),
        ``center_frames`` (frame of feature 0's centre) and ``center``
        (the same in grid units: ``center_frames / feature_stride``).
    """
    span = clip_len * frame_interval
    if temporal_pool == 'avg':
        step, center_frames = float(stride), span / 2
    elif temporal_pool == 'none':
        if stride != span:
            raise ValueError(
                f"temporal_pool='none' keeps every backbone step, so clips "
                f'must tile the video: stride must be clip_len * '
                f'frame_interval = {span}, got {stride}')
        if not backbone_steps:
            raise ValueError("temporal_pool='none' needs backbone_steps")
        step = span / backbone_steps
        center_frames = step / 2
    else:
        raise ValueError(f'temporal_pool must be one of {TEMPORAL_POOLS}, '
                         f'got {temporal_pool!r}')
    return dict(feature_stride=step, center_frames=center_frames,
                center=center_frames / step)


def _open_video(path: str, backends: Sequence[str], num_threads: int):
    from re2tal_mm.datasets.transforms import TALVideoInit
    res = TALVideoInit(backends=backends, num_threads=num_threads)(
        dict(filename=path))
    if not res.get('avg_fps'):
        raise IOError(f'cannot decode video {path}: no frame rate')
    return res


class _FrameCache:
    """Decoded, resized frames of a video, the latest batch's kept (clips
    of consecutive batches overlap)."""

    def __init__(self, opened: dict, size: Optional[int]) -> None:
        from re2tal_mm.datasets.transforms import TALVideoDecode
        self.opened, self.size = opened, size
        self.decode = TALVideoDecode()
        self.frames: Dict[int, np.ndarray] = {}

    def get(self, inds: np.ndarray) -> np.ndarray:
        wanted = sorted(set(int(i) for i in inds.reshape(-1)))
        new = [i for i in wanted if i not in self.frames]
        kept = {i: self.frames[i] for i in wanted if i in self.frames}
        if new:
            res = self.decode(dict(self.opened, frame_inds=np.array(new)))
            for i, img in zip(new, res['imgs']):
                kept[i] = resize_crop(img, self.size)
        self.frames = kept
        return np.stack([kept[int(i)] for i in inds.reshape(-1)]).reshape(
            inds.shape + kept[wanted[0]].shape)


def extract_video_features(
        extractor: BackboneFeatures,
        video_path: str,
        clip_len: int = 16,
        frame_interval: int = 1,
        stride: Optional[int] = None,
        size: Optional[int] = 224,
        temporal_pool: str = 'avg',
        batch_size: int = 8,
        backends: Sequence[str] = ('decord', 'pyav'),
        num_threads: int = 1,
        on_batch: Optional[Callable[[int], None]] = None,
        enable_grad: bool = False) -> Tuple[np.ndarray, dict]:
    """Features of one video: sliding clips through ``extractor``.

    The video is opened once (metadata only) and decoded one batch of clips
    at a time (frames shared by consecutive batches decoded once), so
    memory does not grow with its length. Frames past the video's end
    repeat its last frame.

    Args:
        extractor (BackboneFeatures): From :func:`build_feature_extractor`.
        video_path (str): Video file.
        clip_len (int): Frames per clip. Defaults to 16.
        frame_interval (int): Frames between two sampled frames of a clip.
            Defaults to 1.
        stride (int, optional): Frames between two clip starts. Defaults
            to None: ``clip_len * frame_interval // 4`` (at least 1) for
            ``'avg'`` (16-frame clips every 4 frames, as the usual I3D
            features), ``clip_len * frame_interval`` for ``'none'``.
        size (int, optional): Resize the shorter side to ``size``, then
            crop the centre ``size x size``; None keeps the decoded frames.
            Defaults to 224.
        temporal_pool (str): ``'avg'``: one feature per clip, the mean over
            the backbone's time steps; ``'none'``: every time step of the
            backbone. Defaults to ``'avg'``.
        batch_size (int): Clips per backbone call. Defaults to 8.
        backends (Sequence[str]): Decoding backends of ``TALVideoInit``.
            Defaults to ``('decord', 'pyav')``.
        num_threads (int): Decoding threads. Defaults to 1.
        on_batch (Callable[[int], None], optional): Called with the number
            of clips of each batch once it is done. Defaults to None.
        enable_grad (bool): Run with autograd enabled instead of under
            ``torch.no_grad()`` (to check that both give the same
            features; slower, more memory). Defaults to False.

    Returns:
        tuple[np.ndarray, dict]: ``T x C`` float32 features and what the
        manifest records about them: ``fps``, ``num_frames``,
        ``duration``, ``num_clips``, ``num_features``, ``feature_dim``,
        ``feature_stride``, ``center_frames``, ``center``, ``clip_len``,
        ``frame_interval``, ``clip_stride``, ``temporal_pool``,
        ``input_size`` and ``decode_backend``.
    """
    if temporal_pool not in TEMPORAL_POOLS:
        raise ValueError(f'temporal_pool must be one of {TEMPORAL_POOLS}, '
                         f'got {temporal_pool!r}')
    span = clip_len * frame_interval
    if stride is None:
        stride = span if temporal_pool == 'none' else max(1, span // 4)
    if temporal_pool == 'none' and stride != span:
        feature_grid(clip_len, frame_interval, stride, 'none', 1)  # raises
    opened = _open_video(video_path, backends, num_threads)
    total, fps = int(opened['total_frames']), float(opened['avg_fps'])
    starts = clip_starts(total, clip_len, frame_interval, stride)
    inds = clip_frame_indices(starts, clip_len, frame_interval, total)
    cache, outs = _FrameCache(opened, size), []
    try:
        with torch.set_grad_enabled(enable_grad):
            for k in range(0, len(starts), batch_size):
                clips = torch.from_numpy(cache.get(inds[k:k + batch_size]))
                feats = extractor(extractor.preprocess(clips))  # (B, C, T')
                if temporal_pool == 'avg':
                    feats = feats.mean(-1, keepdim=True)
                outs.append(feats.detach().float().cpu())
                if on_batch is not None:
                    on_batch(len(clips))
    finally:
        reader = opened.pop('video_reader', None)
        if hasattr(reader, 'close'):
            reader.close()
    feats = torch.cat(outs)  # (N, C, T')
    steps = feats.shape[-1]
    grid = feature_grid(clip_len, frame_interval, stride, temporal_pool,
                        steps)
    feats = feats.permute(0, 2, 1).reshape(-1, feats.shape[1]).numpy()
    if temporal_pool == 'none':  # steps centred past the video's end
        centres = np.arange(len(feats)) * grid['feature_stride'] + \
            grid['center_frames']
        feats = feats[:max(1, int((centres < total).sum()))]
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    info = dict(fps=fps, num_frames=total, duration=total / fps,
                num_clips=int(len(starts)), num_features=int(feats.shape[0]),
                feature_dim=int(feats.shape[1]), **grid, clip_len=clip_len,
                frame_interval=frame_interval, clip_stride=int(stride),
                temporal_pool=temporal_pool,
                input_size=int(size) if size and size > 0 else None,
                decode_backend=opened.get('decode_backend'))
    return feats, info


# ------------------------------------------------------------- manifest
def settings_digest(settings: dict) -> str:
    """Short sha256 of the settings that determine the features (the key a
    finished video's entry must match to be skipped on a rerun)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def feature_settings(extractor: BackboneFeatures, clip_len: int,
                     frame_interval: int, stride: Optional[int],
                     size: Optional[int], temporal_pool: str) -> dict:
    """What determines the features: backbone config and weights (or the
    seed), whether it is rewired (every rewiring computes one function,
    whatever its mode), pooling, normalization and the clip layout."""
    span = clip_len * frame_interval
    if stride is None:
        stride = span if temporal_pool == 'none' else max(1, span // 4)
    info = extractor.info
    return dict(backbone_cfg_sha256=info.get('backbone_cfg_sha256'),
                checkpoint_sha256=info.get('checkpoint_sha256'),
                seed=info.get('seed'),
                rewired=info.get('rewiring') is not None,
                spatial_pool=extractor.spatial_pool,
                frames_as_batch=extractor.frames_as_batch,
                mean=info.get('mean'), std=info.get('std'),
                to_rgb=extractor.to_rgb, clip_len=clip_len,
                frame_interval=frame_interval, clip_stride=int(stride),
                input_size=size if size and size > 0 else None,
                temporal_pool=temporal_pool)


def manifest_entry(video_id: str, video_file: str, info: dict,
                   extractor: BackboneFeatures, settings: dict) -> dict:
    """The manifest entry of one video (see :data:`MANIFEST_FORMAT`)."""
    keep = ('config', 'model', 'backbone', 'checkpoint',
            'checkpoint_sha256', 'seed', 'rewiring', 'spatial_pool',
            'frames_as_batch', 'mean', 'std', 'to_rgb')
    entry = dict(format=MANIFEST_FORMAT, video_id=video_id,
                 feature_file=video_id + '.npy', video_file=video_file,
                 dtype='float32', grid=GRID_FORMULA)
    entry.update(info)
    entry.update({k: extractor.info.get(k) for k in keep})
    entry['settings_sha256'] = settings_digest(settings)
    return entry


def list_videos(video_dir: str, ann_file: Optional[str] = None,
                subset: Optional[Sequence[str]] = None,
                suffix: Optional[str] = None) -> List[Tuple[str, str]]:
    """``(video_id, file)`` pairs, sorted by id.

    Args:
        video_dir (str): Folder of the videos.
        ann_file (str, optional): ActivityNet-style annotation: only its
            videos (of ``subset``), each ``<video_dir>/<video_id><suffix>``
            (the first of :data:`VIDEO_EXTENSIONS` that exists when no
            ``suffix``; the first candidate when none does, so that its
            failure names it). Defaults to None: every file of
            ``video_dir`` with a video extension (or ``suffix``).
        subset (Sequence[str], optional): Subsets of ``ann_file`` kept.
            Defaults to None (all).
        suffix (str, optional): File extension. Defaults to None.
    """
    if not osp.isdir(video_dir):
        raise FileNotFoundError(f'video folder not found: {video_dir}')
    exts = (suffix, ) if suffix else VIDEO_EXTENSIONS
    if ann_file is None:
        pairs = {}
        for name in sorted(os.listdir(video_dir)):
            stem, ext = osp.splitext(name)
            if ext.lower() in exts and stem not in pairs and \
                    osp.isfile(osp.join(video_dir, name)):
                pairs[stem] = osp.join(video_dir, name)
        return sorted(pairs.items())
    from re2tal_mm.datasets.annotations import load_json
    data = load_json(ann_file)
    database = data.get('database') if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise ValueError(f'{ann_file}: no "database" (an ActivityNet-style '
                         'annotation file is expected)')
    if subset:
        wanted = {subset} if isinstance(subset, str) else set(subset)
        database = {k: v for k, v in database.items()
                    if v.get('subset') in wanted}
    pairs = []
    for vid in sorted(database):
        cands = [osp.join(video_dir, vid + e) for e in exts]
        pairs.append((vid, next((c for c in cands if osp.isfile(c)),
                                cands[0])))
    return pairs


def shard_of(items: Sequence, rank: int, world_size: int) -> list:
    """Item ``k`` goes to rank ``k % world_size``: each item once."""
    if not 0 <= rank < world_size:
        raise ValueError(f'rank must be in [0, {world_size}), got {rank}')
    return list(items)[rank::world_size]

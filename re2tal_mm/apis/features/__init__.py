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

Modules, one concept each: :mod:`.extractor` (building the backbone,
:class:`BackboneFeatures`), :mod:`.clips` (clip geometry and the feature
grid), :mod:`.loop` (the extraction loop with its frame cache, the
settings that determine the features, the video list and its sharding);
the manifest (format, entries, settings digest, reading and writing) lives
in :mod:`re2tal_mm.datasets.feature_manifest`, which the dataset side reads.
"""
from re2tal_mm.datasets.feature_manifest import (GRID_FORMULA, MANIFEST_FORMAT,
                                                 manifest_entry,
                                                 settings_digest)
from re2tal_mm.models.pooling import SPATIAL_POOLS

from .clips import (TEMPORAL_POOLS, clip_frame_indices, clip_starts,
                    default_stride, feature_grid, resize_crop)
from .extractor import (SHORT_SHA, BackboneFeatures, build_feature_extractor,
                        file_sha256)
from .loop import (VIDEO_EXTENSIONS, extract_video_features, feature_settings,
                   list_videos, shard_of)

__all__ = [
    'BackboneFeatures', 'GRID_FORMULA', 'MANIFEST_FORMAT', 'SHORT_SHA',
    'SPATIAL_POOLS', 'TEMPORAL_POOLS', 'VIDEO_EXTENSIONS',
    'build_feature_extractor', 'clip_frame_indices', 'clip_starts',
    'default_stride', 'extract_video_features', 'feature_grid',
    'feature_settings', 'file_sha256', 'list_videos', 'manifest_entry',
    'resize_crop', 'settings_digest', 'shard_of'
]

from .features import (BackboneFeatures, build_feature_extractor,
                       extract_video_features)
from .inference import init_localizer, localize_video
from .visualization import plot_timeline, timeline_lanes

__all__ = [
    'BackboneFeatures', 'build_feature_extractor', 'extract_video_features',
    'init_localizer', 'localize_video', 'plot_timeline', 'timeline_lanes'
]

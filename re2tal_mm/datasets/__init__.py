from .annotations import (convert_bsn_activitynet, convert_gtad_thumos,
                          dump_activitynet_json, load_activitynet_json)
from .feature_loading import LoadTALFeature
from .tal_dataset import TALDataset
from .transforms import (PackTALInputs, TALVideoDecode, TALVideoInit,
                         TALWindowSample)
from .windows import sliding_windows, video_windows, window_starts

__all__ = [
    'TALDataset', 'sliding_windows', 'video_windows', 'window_starts',
    'LoadTALFeature',
    'PackTALInputs', 'TALVideoDecode', 'TALVideoInit', 'TALWindowSample',
    'load_activitynet_json', 'dump_activitynet_json',
    'convert_bsn_activitynet', 'convert_gtad_thumos'
]

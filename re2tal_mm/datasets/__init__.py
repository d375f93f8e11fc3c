from .annotations import (convert_bsn_activitynet, convert_gtad_thumos,
                          dump_activitynet_json, load_activitynet_json)
from .tal_dataset import (TALDataset, sliding_window_offsets,
                          sliding_windows)
from .transforms import (LoadTALFeature, PackTALInputs, TALVideoDecode,
                         TALVideoInit, TALWindowSample)

__all__ = [
    'TALDataset', 'sliding_window_offsets', 'sliding_windows',
    'LoadTALFeature',
    'PackTALInputs', 'TALVideoDecode', 'TALVideoInit', 'TALWindowSample',
    'load_activitynet_json', 'dump_activitynet_json',
    'convert_bsn_activitynet', 'convert_gtad_thumos'
]

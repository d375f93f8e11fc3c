from .functional import (ANET_TIOU_THRESHOLDS, DATASET_TIOU_THRESHOLDS,
                         PROTOCOLS, THUMOS_TIOU_THRESHOLDS,
                         default_tiou_thresholds, evaluate_detection,
                         format_ap_table, interpolated_ap)
from .tal_metric import TALMetric

__all__ = ['TALMetric', 'evaluate_detection', 'format_ap_table',
           'interpolated_ap', 'default_tiou_thresholds', 'PROTOCOLS',
           'ANET_TIOU_THRESHOLDS', 'THUMOS_TIOU_THRESHOLDS',
           'DATASET_TIOU_THRESHOLDS']

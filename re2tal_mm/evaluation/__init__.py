from .functional import (ANET_TIOU_THRESHOLDS, THUMOS_TIOU_THRESHOLDS,
                         evaluate_detection, format_ap_table, interpolated_ap)
from .tal_metric import TALMetric

__all__ = ['TALMetric', 'evaluate_detection', 'format_ap_table',
           'interpolated_ap', 'ANET_TIOU_THRESHOLDS', 'THUMOS_TIOU_THRESHOLDS']

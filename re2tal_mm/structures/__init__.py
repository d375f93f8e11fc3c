from .nms_procedures import opentad_nms, segment_voting
from .segments import TemporalGrid, clip_segments, pairwise_tiou, segment_nms

__all__ = ['TemporalGrid', 'clip_segments', 'pairwise_tiou', 'segment_nms',
           'opentad_nms', 'segment_voting']

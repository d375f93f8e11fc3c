from .segments import TemporalGrid, pairwise_tiou, segment_nms

__all__ = ['TemporalGrid', 'pairwise_tiou', 'segment_nms']

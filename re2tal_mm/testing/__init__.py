"""Helpers shared by the tests and the analysis tools (not imported by the
plugin itself): toy feature videos with planted segments."""
from .toy_features import (FPS, FSTRIDE, STEP, WIN, C, K, average_precision,
                           make_video, predict_video, window_sample)

__all__ = [
    'C', 'K', 'WIN', 'FPS', 'FSTRIDE', 'STEP', 'make_video', 'window_sample',
    'average_precision', 'predict_video'
]

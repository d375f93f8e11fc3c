"""Localizer, neck, head, losses and post-processor (registered in
mmaction's MODELS on import)."""
from .head import ActionFormerHead
from .localizer import TemporalActionLocalizer
from .losses import DIoU1DLoss, TALSigmoidFocalLoss
from .neck import ActionFormerNeck
from .post_processing import TALPostProcessor

__all__ = [
    'ActionFormerHead', 'ActionFormerNeck', 'DIoU1DLoss',
    'TALPostProcessor', 'TALSigmoidFocalLoss', 'TemporalActionLocalizer'
]

"""Localizer, neck, head, losses and post-processor (registered in
mmaction's MODELS on import)."""
from .actionformer_neck import ActionFormerTransformerNeck
from .head import ActionFormerHead
from .localizer import TemporalActionLocalizer
from .losses import DIoU1DLoss, TALSigmoidFocalLoss
from .neck import ActionFormerNeck
from .post_processing import TALPostProcessor
from .temporal_adapter import (ClipBatchedViT, ClipGrid, TemporalAdapter,
                               insert_temporal_adapters, set_temporal_context)
from .tridet_head import TriDetHead
from .tridet_neck import SGPBlock, TriDetNeck

__all__ = [
    'ActionFormerHead', 'ActionFormerNeck', 'ActionFormerTransformerNeck',
    'ClipBatchedViT', 'ClipGrid',
    'DIoU1DLoss', 'SGPBlock', 'TALPostProcessor', 'TALSigmoidFocalLoss',
    'TemporalActionLocalizer', 'TemporalAdapter', 'TriDetHead', 'TriDetNeck',
    'insert_temporal_adapters', 'set_temporal_context'
]

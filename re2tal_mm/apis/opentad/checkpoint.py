"""Convert OpenTAD checkpoints into checkpoints of our models.

OpenTAD (``tools/train.py``) saves ``{"epoch", "state_dict", "optimizer",
"scheduler", "state_dict_ema"}`` with DDP's ``module.`` prefix: the backbone
under ``module.backbone.model.backbone.*`` (a Recognizer3D without head), the
detector under ``module.projection.*``, ``module.neck.*`` and
``module.rpn_head.*``. Its test evaluates ``state_dict_ema`` when EMA is on
(every Re2TAL config), and so does :func:`convert_checkpoint` by default.
A bare backbone or recognizer state dict (the released K400-finetuned
``invswin-*`` / ``invslowfast101_*`` files) converts too.
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

from torch import Tensor

from . import KIND_NAMES, kinds
from .keys import UnplacedTensorError

#: where OpenTAD keeps the backbone of a TAL detector (after ``module.``)
BACKBONE_PREFIX = 'backbone.model.backbone.'
DETECTOR_PREFIXES = ('projection.', 'neck.', 'rpn_head.')
#: recognizer-level keys that have no tensors of the backbone in them
RECOGNIZER_PREFIXES = ('backbone.', 'model.backbone.')
#: a recognizer's classification head: no counterpart in a localizer
HEAD_PREFIXES = ('cls_head.', 'model.cls_head.')
#: top-level entries of an OpenTAD checkpoint that are training state
TRAINING_STATE = ('optimizer', 'scheduler')
META_KEY = 're2tal_opentad'


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str
                 ) -> Dict[str, Tensor]:
    """``state_dict`` without ``prefix`` on the keys that have it (all of
    them must)."""
    if all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def find_kind(state_dict: Mapping[str, Tensor], role: str):
    """The kind module (``ROLE`` ``'backbone'`` or ``'detector'``) whose
    ``owns_keys`` recognises these OpenTAD keys."""
    found = [k for k in kinds() if getattr(k, 'ROLE', None) == role and
             k.owns_keys(state_dict)]
    if len(found) != 1:
        example = next(iter(state_dict), None)
        raise ValueError(
            f'cannot tell which OpenTAD {role} these {len(state_dict)} '
            f'tensors are (e.g. {example!r}): '
            f'{"none" if not found else "several"} of the known kinds '
            f'({", ".join(KIND_NAMES)}) recognise them')
    return found[0]


def split_state_dict(state_dict: Mapping[str, Tensor]
                     ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], List]:
    """OpenTAD keys (``module.`` removed) to (backbone keys without the
    recognizer prefix, detector keys, other keys)."""
    backbone, detector, other = {}, {}, []
    for key, value in state_dict.items():
        if key.startswith(BACKBONE_PREFIX):
            backbone[key[len(BACKBONE_PREFIX):]] = value
        elif key.startswith(DETECTOR_PREFIXES):
            detector[key] = value
        else:
            other.append(key)
    return backbone, detector, other


def convert_checkpoint(checkpoint: Mapping, ema: bool = True,
                       source: Optional[str] = None) -> Tuple[dict, dict]:
    """An OpenTAD checkpoint (or bare backbone state dict) to ours.

    Args:
        checkpoint (Mapping): ``torch.load`` of the OpenTAD file.
        ema (bool): Take ``state_dict_ema`` when the file has it (what
            OpenTAD's test evaluates with EMA on). Defaults to True.
        source (str, optional): The file's name, recorded in the meta.
            Defaults to None.

    Returns:
        tuple[dict, dict]: Our checkpoint (``state_dict`` with the keys of
        :class:`TemporalActionLocalizer`, or of the bare backbone when the
        source is a bare backbone; ``meta`` with ``re2tal_rewiring`` and
        ``re2tal_opentad``) and a report (``taken``: which state dict,
        ``kinds``, ``mapped``: number of tensors, ``dropped``: OpenTAD keys
        left out on purpose, ``training_state``: entries not carried over).

    Raises:
        UnplacedTensorError: A tensor that has no place in our model.
    """
    from re2tal_mm.rewiring.spec import META_KEY as REWIRING_KEY
    is_container = 'state_dict' in checkpoint and isinstance(
        checkpoint['state_dict'], Mapping)
    taken = 'state_dict'
    if is_container and ema and checkpoint.get('state_dict_ema'):
        taken = 'state_dict_ema'
    state_dict = checkpoint[taken] if is_container else checkpoint
    if not is_container:
        taken = '(bare state dict)'
    state_dict = strip_prefix(state_dict, 'module.')
    backbone, detector, other = split_state_dict(state_dict)
    bare = not backbone and not detector
    ours, dropped, used, rewiring = OrderedDict(), [], {}, None
    if bare:  # a bare backbone, or a recognizer (backbone.*, cls_head.*)
        dropped = [k for k in state_dict if k.startswith(HEAD_PREFIXES)]
        backbone = {k: v for k, v in state_dict.items()
                    if not k.startswith(HEAD_PREFIXES)}
        for prefix in RECOGNIZER_PREFIXES:
            backbone = strip_prefix(backbone, prefix)
        other = []
    if other:
        raise UnplacedTensorError(other[0], 'localizer (neither under '
                                  f'{BACKBONE_PREFIX!r} nor a detector '
                                  f'part {DETECTOR_PREFIXES})')
    if backbone:
        kind = find_kind(backbone, 'backbone')
        mapped, drop = kind.convert_state_dict(backbone)
        prefix = '' if bare else 'backbone.'
        ours.update((prefix + k, v) for k, v in mapped.items())
        dropped += [BACKBONE_PREFIX + k for k in drop]
        used['backbone'] = kind.__name__.rsplit('.', 1)[-1]
        rewiring = kind.REWIRING
    if detector:
        kind = find_kind(detector, 'detector')
        mapped, drop = kind.convert_state_dict(detector)
        ours.update(mapped)
        dropped += drop
        used['detector'] = kind.__name__.rsplit('.', 1)[-1]
    meta = {
        # the function OpenTAD's backbone computes (e.g. the first-block
        # form of its reversible SlowFast): model building paths run it so
        REWIRING_KEY: rewiring,
        META_KEY: dict(source=source, state_dict=taken, kinds=used,
                       epoch=checkpoint.get('epoch') if is_container
                       else None),
    }
    if not backbone:  # a feature-mode detector: nothing to rewire
        meta.pop(REWIRING_KEY)
    report = dict(
        taken=taken, kinds=used, mapped=len(ours), dropped=dropped,
        training_state=[k for k in checkpoint if is_container and
                        k not in ('state_dict', 'state_dict_ema', 'epoch')])
    return dict(meta=meta, state_dict=ours), report

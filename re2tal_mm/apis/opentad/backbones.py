"""What the OpenTAD backbone kinds (``swin``, ``slowfast``) share.

OpenTAD's Re2TAL backbones are constructed with their own arguments (their
defaults differ from MMAction2's); each kind module lists them with
OpenTAD's defaults and maps them to an MMAction2 backbone config plus our
rewire spec. :func:`build_backbone` builds that pair as the localizer does
(rewired before the weights are loaded) and loads converted weights
strictly.
"""
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from mmaction.registry import MODELS
from ...rewiring import apply_rewiring

#: OpenTAD ``inv_mode`` per stage -> our rewire mode (the same function;
#: theirs picks how the backward runs, so does ours)
INV_MODES = dict(custom_backprop='reversible', stream_backprop='reversible',
                 vanilla='autograd')


def opentad_args(constructor: Mapping[str, Any],
                 defaults: Mapping[str, Any], what: str) -> Dict[str, Any]:
    """OpenTAD's constructor arguments, their defaults filled in.

    Args:
        constructor (Mapping): The arguments, optionally with ``cls`` (a
            fixture's constructor) or ``type`` (an OpenTAD config entry).
        defaults (Mapping): Every argument OpenTAD's class takes, with its
            default.
        what (str): The class name, for errors.

    Returns:
        dict: The arguments.

    Raises:
        ValueError: Of another class, or an argument OpenTAD's class does
            not take.
    """
    args = dict(constructor)
    kind = args.pop('cls', None) or args.pop('type', None)
    if kind is not None and kind != what:
        raise ValueError(f'expected an OpenTAD {what}, got {kind!r}')
    unknown = set(args) - set(defaults)
    if unknown:
        raise ValueError(f'{what}: unknown constructor arguments '
                         f'{sorted(unknown)}; known: {sorted(defaults)}')
    return {**defaults, **args}


def rewire_mode(inv_mode: Iterable[str]) -> str:
    """Our rewire mode for OpenTAD's per-stage ``inv_mode``: ``'autograd'``
    when every stage is ``'vanilla'``, else ``'reversible'`` (both compute
    the same function)."""
    modes = [inv_mode] if isinstance(inv_mode, str) else list(inv_mode)
    unknown = set(modes) - set(INV_MODES)
    if unknown:
        raise ValueError(f'unknown OpenTAD inv_mode {sorted(unknown)}; '
                         f'known: {sorted(INV_MODES)}')
    return 'autograd' if all(INV_MODES[m] == 'autograd'
                             for m in modes) else 'reversible'


def build_backbone(cfg: Dict[str, Any],
                   state_dict: Optional[Mapping[str, Tensor]] = None,
                   convert: Optional[Callable] = None,
                   dtype: torch.dtype = torch.float64) -> nn.Module:
    """Our backbone of ``cfg = model_cfg(...)``, rewired as it says, with
    OpenTAD's ``state_dict`` converted by ``convert`` and loaded strictly
    (every tensor of ours comes from it).

    Args:
        cfg (dict): ``dict(backbone=..., rewire=...)``.
        state_dict (Mapping, optional): OpenTAD's tensors. Defaults to None
            (initial weights).
        convert (callable, optional): The kind's ``convert_state_dict``.
            Defaults to None.
        dtype (torch.dtype): Floating point type of the model. Defaults to
            ``torch.float64``.

    Returns:
        nn.Module: The backbone, in eval mode.
    """
    model = MODELS.build(dict(cfg['backbone'])).to(dtype)
    apply_rewiring(model, cfg.get('rewire'))
    if state_dict is not None:
        ours, _ = convert(state_dict)
        model.load_state_dict(ours, strict=True)
    model.eval()  # (MMAction2's Swin ``train`` returns None)
    return model


def run_backbone(model: nn.Module, x: Tensor) -> Tuple[Tensor, ...]:
    """``model(x)`` without gradients, as a tuple."""
    with torch.no_grad():
        out = model(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out, )

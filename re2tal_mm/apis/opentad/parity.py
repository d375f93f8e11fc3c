"""Compare our outputs with an OpenTAD reference fixture's.

A fixture (``../shared/reference/opentad/*.pth``, see its README) holds
OpenTAD's weights, inputs and the outputs of OpenTAD's code on them. The kind
module of the fixture runs our model on the same weights and inputs and
returns its outputs under the fixture's own entry names; :func:`compare`
walks them side by side, leaf by leaf, with the tolerance each kind of entry
allows (:func:`tolerance_of`).
"""
import math
from typing import Any, Dict, List, NamedTuple, Optional

import torch

#: fixture entries that are inputs, settings or provenance, never outputs
INPUT_ENTRIES = frozenset({
    'state_dict', 'state_dict_ema', 'optimizer', 'scheduler', 'epoch',
    'input', 'input_chunks', 'features', 'masks', 'features_padded',
    'masks_padded', 'constructor', 'config', 'class_names', 'meta', 'mode',
    'dtype', 'seed', 'opentad_commit', 'gt_segments', 'gt_labels',
    'settings', 'metas', 'loss_normalizer_before',
    'center_sampling_border_ties'
})

#: float64 outputs of one function on the same weights and inputs
EXACT = 1e-10
#: OpenTAD computes its focal loss in float32
LOSS = 1e-6
#: OpenTAD's NMS (and TriDet's boundary decoding) run in float32
FLOAT32 = 1e-5
#: OpenTAD rounds result segments to 2 decimals (s) and scores to 4
RESULT_SEGMENT, RESULT_SCORE = 0.01 + 1e-9, 1e-4 + 1e-9


class Row(NamedTuple):
    """One compared leaf: its path, the max |difference| (inf for a
    mismatch of shape, type, label or order), the tolerance, and a note."""
    path: str
    diff: float
    tol: float
    note: str = ''

    @property
    def ok(self) -> bool:
        return self.diff <= self.tol


def tolerance_of(path: str, value: Any) -> float:
    """The tolerance of a leaf from its path (and dtype).

    Losses and loss normalisers: :data:`LOSS`; anything OpenTAD computes in
    float32 (a float32 expected tensor, NMS outputs, TriDet's decoded
    offsets): :data:`FLOAT32`; the rest :data:`EXACT`. :func:`compare`
    takes the first two relative to the magnitude of the expected value
    when it is over 1.
    """
    leaf = path.rsplit('.', 1)[-1]
    if 'loss' in leaf or leaf == 'cost':
        return LOSS
    if isinstance(value, torch.Tensor) and value.dtype in (
            torch.float32, torch.float16, torch.bfloat16):
        return FLOAT32
    if '.nms_raw' in path or 'decoded_offsets' in path:
        return FLOAT32
    return EXACT


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.dtype == torch.bool or not (a.is_floating_point() or
                                     b.is_floating_point()):
        return 0.0 if torch.equal(a.long(), b.long()) else math.inf
    if a.numel() == 0:
        return 0.0
    a, b = a.double(), b.double()
    same_inf = torch.isinf(a) & (a == b)
    d = (a - b).abs().masked_fill(same_inf, 0)
    return float(d.nan_to_num(math.inf).max())


def compare_results(path: str, expected: Dict[str, list],
                    ours: Dict[str, list]) -> List[Row]:
    """Post-processed results: per video the same segments and labels in
    the same order, within OpenTAD's rounding."""
    rows = []
    for video in sorted(set(expected) | set(ours)):
        where = f'{path}.{video}'
        exp, our = expected.get(video), ours.get(video)
        if exp is None or our is None:
            rows.append(Row(where, math.inf, 0, 'video missing in '
                            + ('ours' if our is None else 'the fixture')))
            continue
        if len(exp) != len(our):
            rows.append(Row(where, math.inf, 0, f'{len(our)} segments, '
                            f'fixture {len(exp)}'))
            continue
        bad = [i for i, (e, o) in enumerate(zip(exp, our))
               if e['label'] != o['label']]
        seg = max((abs(a - b) for e, o in zip(exp, our)
                   for a, b in zip(e['segment'], o['segment'])), default=0.)
        score = max((abs(e['score'] - o['score'])
                     for e, o in zip(exp, our)), default=0.)
        note = f'{len(our)} segments'
        if bad:
            note += f'; labels differ at {len(bad)} (first #{bad[0]})'
        rows.append(Row(where + '.segment', math.inf if bad else seg,
                        RESULT_SEGMENT, note))
        rows.append(Row(where + '.score', score, RESULT_SCORE))
    return rows


def compare(expected: Any, ours: Any, path: str = '') -> List[Row]:
    """Walk ``ours`` and compare every leaf with the same path in
    ``expected``.

    Only what we produced is compared; use :func:`not_produced` for the
    fixture's outputs we did not produce.
    """
    if path.endswith('results') and isinstance(ours, dict):
        return compare_results(path, expected, ours)
    if isinstance(ours, dict):
        rows = []
        for key, value in ours.items():
            sub = f'{path}.{key}' if path else str(key)
            if not isinstance(expected, dict) or key not in expected:
                rows.append(Row(sub, math.inf, 0, 'not in the fixture'))
            else:
                rows += compare(expected[key], value, sub)
        return rows
    if isinstance(ours, (list, tuple)):
        if not isinstance(expected, (list, tuple)) or \
                len(expected) != len(ours):
            return [Row(path, math.inf, 0, 'list length differs')]
        return [r for i, (e, o) in enumerate(zip(expected, ours))
                for r in compare(e, o, f'{path}[{i}]')]
    tol = tolerance_of(path, expected)
    if isinstance(ours, (bool, str)) or isinstance(expected, (bool, str)):
        return [Row(path, 0.0 if ours == expected else math.inf, 0)]
    a, b = torch.as_tensor(expected), torch.as_tensor(ours)
    note = '' if a.shape == b.shape else \
        f'shape {tuple(b.shape)}, fixture {tuple(a.shape)}'
    diff = _diff(a, b)
    if tol in (LOSS, FLOAT32) and a.numel():
        # float32 values of magnitude > 1 carry a relative error (e.g.
        # segments decoded in float32 in strides of up to 32, in grid units)
        diff /= max(1.0, float(a.double().abs().max()))
        note = note or 'relative'
    return [Row(path, diff, tol, note)]


def not_produced(expected: Any, ours: Any, path: str = '') -> List[str]:
    """Output entries of the fixture that ``ours`` does not have."""
    if not isinstance(expected, dict):
        return []
    missing = []
    for key, value in expected.items():
        sub = f'{path}.{key}' if path else str(key)
        if key in INPUT_ENTRIES:
            continue
        if not isinstance(ours, dict) or key not in ours:
            missing.append(sub)
        else:
            missing += not_produced(value, ours[key], sub)
    return missing


def format_rows(rows: List[Row], limit: Optional[int] = None) -> str:
    """A table of the compared leaves, worst first within each verdict."""
    rows = sorted(rows, key=lambda r: (r.ok, r.path))
    lines = [f'{"entry":<58} {"max |diff|":>11} {"tol":>8}  ok']
    for r in rows[:limit]:
        lines.append(f'{r.path:<58} {r.diff:>11.3g} {r.tol:>8.0e}  '
                     f'{"yes" if r.ok else "NO"}'
                     + (f'  ({r.note})' if r.note else ''))
    return '\n'.join(lines)

"""ActivityNet-style JSON files: reading, checking and writing.

The layout (``database``, see :mod:`re2tal_mm.datasets.annotations` for the
converters that produce it)::

    {"database": {video_id: {"subset": str, "duration": float, "fps": float?,
                             "annotations": [{"segment": [s, e],
                                              "label": str}],
                             "ambiguous": [[s, e], ...]?}}}

Times are seconds. Shared by the datasets (training clips segments to the
video: ``load_activitynet_json(clip=True)``) and the metric (segments as in
the file), so it sits in the bottom layer.
"""
import json
import logging
import os.path as osp
from collections import OrderedDict
from typing import Optional, Tuple, Union

from .reporting import warn


def load_json(path):
    """Read a JSON file; a missing or malformed file raises a clear error."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation file not found: {path}')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'malformed JSON in {path}: {err.msg} at line '
                         f'{err.lineno} column {err.colno} (char {err.pos})'
                         ) from err


def strip_prefix(video_id, prefix='v_'):
    """Drop the ``v_`` prefix of ActivityNet ids."""
    return video_id[len(prefix):] if video_id.startswith(prefix) else video_id


#: Clipped or dropped segments named in the warning of :func:`clean_segments`.
MAX_NAMED_SEGMENTS = 5


def _fmt_time(t):
    """``131.0``, ``2.35``, ``120.333``: seconds with 1 to 3 decimals."""
    text = f'{t:.3f}'.rstrip('0')
    return text + '0' if text.endswith('.') else text


def _fmt_segment(s, e):
    return f'[{_fmt_time(s)}, {_fmt_time(e)}]'


def clean_segments(database: dict, source: str = '<memory>',
                   logger: Optional[Union[logging.Logger, str]] = None,
                   max_named: int = MAX_NAMED_SEGMENTS) -> Tuple[int, int]:
    """Clip segments to ``[0, duration]`` and drop the empty ones, in place.

    When some are clipped or dropped, one warning gives the totals and names
    the first ``max_named`` of them by video and time, e.g.
    ``video_test_0000123: [120.3, 131.0] clipped to [120.3, 128.5]
    (duration 128.5 s)``.

    Args:
        database (dict): ``video_id -> info`` (see the module docstring).
        source (str): Where the database comes from, for the warning.
            Defaults to ``'<memory>'``.
        logger (logging.Logger | str | None): Where the warning goes, as
            for MMEngine's ``print_log`` (e.g. ``'current'``: MMEngine's
            current logger, so it reaches the work_dir log). Defaults to
            None: a ``UserWarning``, also written to the log files of
            MMEngine's current logger.
        max_named (int): Segments named in the warning. Defaults to 5.

    Returns:
        tuple[int, int]: numbers of clipped and dropped segments (a segment
        entirely outside its video counts in both).
    """
    clipped = dropped = changed = 0
    named, videos = [], set()
    for vid, info in database.items():
        duration = info.get('duration')
        dur = '' if duration is None else \
            f' (duration {_fmt_time(float(duration))} s)'
        kept = []
        for ann in info.get('annotations', []):
            s0, e0 = float(ann['segment'][0]), float(ann['segment'][1])
            s, e, was_clipped = s0, e0, False
            if duration is not None and (s < 0 or e > float(duration)):
                s, e = max(s, 0.0), min(e, float(duration))
                clipped += 1
                was_clipped = True
            if e <= s:
                dropped += 1
                why = 'outside the video' if was_clipped and e0 > s0 \
                    else 'end <= start'
                note = f'{vid}: {_fmt_segment(s0, e0)} dropped ({why}){dur}'
            elif was_clipped:
                note = (f'{vid}: {_fmt_segment(s0, e0)} clipped to '
                        f'{_fmt_segment(s, e)}{dur}')
            else:
                kept.append(dict(ann, segment=[s, e]))
                continue
            changed += 1
            videos.add(vid)
            if len(named) < max_named:
                named.append(note)
            if e > s:
                kept.append(dict(ann, segment=[s, e]))
        info['annotations'] = kept
    if changed:
        lines = [f'{source}: {clipped} segment(s) outside their video were '
                 f'clipped, {dropped} with end <= start (after clipping) '
                 f'were dropped, in {len(videos)} video(s):']
        lines += [f'  {n}' for n in named]
        if changed > len(named):
            lines.append(f'  ... and {changed - len(named)} more')
        lines.append('  Check these videos\' "duration" (tools/data/'
                     'check_dataset.py compares it with the video files) '
                     'and their segment times.')
        warn('\n'.join(lines), logger)
    return clipped, dropped


def load_activitynet_json(path, subset=None, class_names=None, clip=True,
                          logger=None):
    """Load an ActivityNet-style annotation file.

    Args:
        path (str): The JSON file.
        subset (str | Sequence[str] | None): Keep only these subsets.
        class_names (Sequence[str] | None): If given, a label outside it is
            an error naming the label and the video.
        clip (bool): Clip segments to ``[0, duration]`` and drop those with
            end <= start (counted in a warning), for training. Evaluation
            passes False: the official evaluators use the segments as they
            are in the file. Defaults to True.
        logger (logging.Logger | str | None): Where the clipping warning
            goes (see :func:`clean_segments`). Defaults to None.

    Returns:
        OrderedDict: ``video_id -> info`` with float segments (clipped to the
        duration if ``clip``).
    """
    data = load_json(path)
    if not isinstance(data, dict) or 'database' not in data:
        raise ValueError(f'{path}: expected an ActivityNet-style JSON with '
                         'a "database" key')
    subsets = None if subset is None else (
        {subset} if isinstance(subset, str) else set(subset))
    database = OrderedDict()
    for vid, info in data['database'].items():
        if subsets is not None and info.get('subset') not in subsets:
            continue
        info = dict(info)
        if 'duration' in info:
            info['duration'] = float(info['duration'])
        info['annotations'] = [
            dict(a, segment=[float(a['segment'][0]), float(a['segment'][1])])
            for a in info.get('annotations', [])]
        database[vid] = info
    if subsets is not None and not database:
        found = sorted({str(v.get('subset')) for v in
                        data['database'].values()})
        raise ValueError(f'subset {subset!r} is empty in {path}; its '
                         f'subsets are {found}')
    if class_names is not None:
        known = set(class_names)
        for vid, info in database.items():
            for ann in info['annotations']:
                if ann['label'] not in known:
                    raise ValueError(f'{path}: label {ann["label"]!r} of '
                                     f'video {vid!r} is not in the class '
                                     'list')
    if clip:
        where = path if subset is None else f'{path} (subset {subset!r})'
        clean_segments(database, where, logger)
    return database


def class_names_of(database):
    """Sorted labels present in ``database``."""
    return sorted({a['label'] for v in database.values()
                   for a in v['annotations']})


def dump_activitynet_json(database, path, version='converted'):
    """Write ``database`` as ActivityNet-style JSON."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(dict(version=version, database=database), f)

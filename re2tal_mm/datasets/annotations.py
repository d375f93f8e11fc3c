"""ActivityNet-style annotation files: loading, checking, converting, export.

The primary format is::

    {"database": {video_id: {"subset": str, "duration": float, "fps": float?,
                             "annotations": [{"segment": [s, e],
                                              "label": str}],
                             "ambiguous": [[s, e], ...]?}}}

Times are seconds. The converters turn the BSN-style ActivityNet-1.3 files and
the G-TAD-style THUMOS-14 CSV files into this layout (ids without ``v_``),
segments as in the source files: clipping to the video is done when training
reads them (``load_activitynet_json(clip=True)``), never for evaluation.
"""
import csv
import json
import logging
import os.path as osp
import warnings
from collections import Counter, OrderedDict, defaultdict
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log

#: THUMOS-14 test videos whose annotations are known to be wrong; G-TAD and
#: most THUMOS tooling leave them out (210 test videos remain).
THUMOS_BAD_VIDEOS = ('video_test_0000270', 'video_test_0001496')


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


def _warn(msg, logger=None):
    """Warn through ``logger``, else ``warnings.warn`` plus the log files.

    Without a logger the message is a ``UserWarning`` (shown once on stderr)
    and is also written to the file handlers of MMEngine's current logger,
    so that it reaches a runner's work_dir log without being printed twice.
    """
    from mmengine.logging import MMLogger, print_log
    if logger is not None:
        print_log(msg, logger=logger, level=logging.WARNING)
        return
    warnings.warn(msg, stacklevel=3)
    current = MMLogger.get_current_instance()
    files = [h for h in current.handlers
             if isinstance(h, logging.FileHandler)]
    if files:
        record = current.makeRecord(current.name, logging.WARNING,
                                    __file__, 0, msg, None, None)
        for handler in files:
            if record.levelno >= handler.level:
                handler.handle(record)


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
        _warn('\n'.join(lines), logger)
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


def _past_end(info):
    """Segments of ``info`` that end after its duration."""
    return sum(a['segment'][1] > info['duration'] for a in info['annotations'])


def convert_bsn_activitynet(anno_json: str, info_csv: str,
                            logger: Optional[Union[str, Any]] = None
                            ) -> 'OrderedDict[str, dict]':
    """BSN-style ActivityNet-1.3 files -> ActivityNet-style database.

    Segments are kept as in the source (the official evaluators use them
    so, also past the video's end); ``TALDataset`` clips them for training.
    What was taken from where is reported per subset through
    :func:`mmengine.logging.print_log`: the number of videos, where
    durations and frame rates come from, videos without annotations and
    segments that end after their video.

    Args:
        anno_json (str): ``anet_anno_action.json`` (``v_<id>`` ->
            duration_second, annotations).
        info_csv (str): ``video_info_new.csv`` (video, numFrame, seconds, fps,
            rfps, subset, featureFrame).
        logger (str | logging.Logger, optional): Where the report goes, as
            for ``print_log``. Defaults to None (printed).

    Returns:
        OrderedDict: ``video_id`` (no ``v_``) -> ``dict(subset, duration,
        fps, num_frames, annotations)``.
    """
    anno = load_json(anno_json)
    if not osp.isfile(info_csv):
        raise FileNotFoundError(f'video info file not found: {info_csv}')
    database = OrderedDict()
    from_csv = Counter()  # subset -> videos whose duration is the CSV's
    with open(info_csv, encoding='utf-8') as f:
        for row in csv.DictReader(f):
            key = row['video']
            if key not in anno:
                raise KeyError(f'{info_csv}: video {key!r} missing from '
                               f'{anno_json}')
            a = anno[key]
            if 'duration_second' not in a:
                from_csv[row['subset']] += 1
            database[strip_prefix(key)] = dict(
                subset=row['subset'],
                duration=float(a.get('duration_second', row['seconds'])),
                fps=float(row['fps']),
                num_frames=int(row['numFrame']),
                annotations=[dict(segment=[float(x['segment'][0]),
                                           float(x['segment'][1])],
                                  label=x['label'])
                             for x in a.get('annotations', [])])
    anno_name, csv_name = osp.basename(anno_json), osp.basename(info_csv)
    for subset, vids in _by_subset(database).items():
        infos = [database[v] for v in vids]
        n_csv = from_csv[subset]
        source = f"{anno_name} 'duration_second'" if not n_csv else (
            f"{anno_name} 'duration_second' for {len(vids) - n_csv}, "
            f"{csv_name} 'seconds' for {n_csv}")
        empty = sum(not i['annotations'] for i in infos)
        past = sum(_past_end(i) for i in infos)
        print_log(
            f'{subset}: {len(vids)} videos; duration from {source}; fps '
            f"from {csv_name} 'fps' (the nominal rate)"
            + (f'; {empty} without annotations' if empty else '')
            + (f'; {past} segment(s) end after their video\'s duration, '
               'kept as in the source (training clips them)'
               if past else ''), logger=logger)
    return database


def _by_subset(database):
    """``subset -> [video ids]`` in file order."""
    groups = OrderedDict()
    for vid, info in database.items():
        groups.setdefault(info['subset'], []).append(vid)
    return groups


def convert_gtad_thumos(annotation_csvs: Dict[str, str],
                        groundtruth_csv: Optional[str],
                        exclude: Sequence[str] = THUMOS_BAD_VIDEOS,
                        logger: Optional[Union[str, Any]] = None,
                        default_fps: float = 30.0
                        ) -> 'OrderedDict[str, dict]':
    """G-TAD-style THUMOS-14 CSVs -> ActivityNet-style database.

    ``Ambiguous`` segments go to each video's ``ambiguous`` list, never among
    the labelled annotations. Segments are kept as in the source. What was
    assumed is reported per subset through
    :func:`mmengine.logging.print_log`: how many videos got their duration
    and frame rate from ``groundtruth_csv`` and how many from their last
    segment end and ``default_fps`` (always the validation videos: the
    groundtruth CSV lists test videos only), the excluded videos and those
    left out for having only ``Ambiguous`` segments.

    Args:
        annotation_csvs (dict[str, str]): subset name -> CSV
            (video, type, type_idx, start, end, startFrame, endFrame).
        groundtruth_csv (str, optional): ``thumos14_test_groundtruth.csv``
            giving video-duration and frame-rate of test videos. Videos it
            does not list take their duration from the last segment end and
            ``default_fps``.
        exclude (Sequence[str]): Video ids left out.
            Defaults to :data:`THUMOS_BAD_VIDEOS`.
        logger (str | logging.Logger, optional): Where the report goes, as
            for ``print_log``. Defaults to None (printed).
        default_fps (float): Frame rate of videos ``groundtruth_csv`` does
            not list. Defaults to 30.0 (nearly all THUMOS-14 videos).

    Returns:
        OrderedDict: ``video_id`` -> ``dict(subset, duration, fps,
        annotations, ambiguous)``.
    """
    meta = {}
    if groundtruth_csv is not None:
        if not osp.isfile(groundtruth_csv):
            raise FileNotFoundError(f'file not found: {groundtruth_csv}')
        with open(groundtruth_csv, encoding='utf-8') as f:
            for row in csv.DictReader(f):
                meta[row['video-name']] = (float(row['video-duration']),
                                           float(row['frame-rate']))
    database = OrderedDict()
    excluded, only_ambiguous = defaultdict(set), defaultdict(list)
    for subset, path in annotation_csvs.items():
        if not osp.isfile(path):
            raise FileNotFoundError(f'annotation file not found: {path}')
        with open(path, encoding='utf-8') as f:
            for row in csv.DictReader(f):
                vid = row['video']
                if vid in exclude:
                    excluded[subset].add(vid)
                    continue
                info = database.setdefault(vid, dict(
                    subset=subset, duration=None, fps=None, annotations=[],
                    ambiguous=[]))
                seg = [float(row['start']), float(row['end'])]
                if row['type'] == 'Ambiguous':
                    info['ambiguous'].append(seg)
                else:
                    info['annotations'].append(dict(segment=seg,
                                                    label=row['type']))
    assumed = defaultdict(list)
    for vid, info in list(database.items()):
        if not info['annotations']:
            del database[vid]  # only ambiguous segments: nothing to detect
            only_ambiguous[info['subset']].append(vid)
            continue
        if vid in meta:
            info['duration'], info['fps'] = meta[vid]
        else:
            ends = [a['segment'][1] for a in info['annotations']] + [
                s[1] for s in info['ambiguous']]
            info['duration'], info['fps'] = max(ends), float(default_fps)
            assumed[info['subset']].append(vid)
    gt_name = osp.basename(groundtruth_csv) if groundtruth_csv else None
    groups = _by_subset(database)
    for subset in annotation_csvs:
        vids = groups.get(subset, [])
        guessed = assumed[subset]
        listed = len(vids) - len(guessed)
        parts = [f'{subset}: {len(vids)} videos']
        if listed:
            parts.append(f'duration and fps from {gt_name} for {listed}')
        if guessed:
            why = (f'not in {gt_name}' if gt_name else
                   'no --groundtruth given')
            parts.append(
                f'duration = last segment end and fps = {default_fps:g} '
                f'ASSUMED for {len(guessed)} ({why}; e.g. '
                f'{", ".join(guessed[:3])}; a video runs longer than its '
                'last segment: tools/data/check_dataset.py compares with '
                'the files)')
        if excluded[subset]:
            parts.append(f'left out (known bad annotations): '
                         f'{", ".join(sorted(excluded[subset]))}')
        if only_ambiguous[subset]:
            parts.append(f'left out (only Ambiguous segments): '
                         f'{", ".join(only_ambiguous[subset])}')
        past = sum(_past_end(database[v]) for v in vids)
        if past:
            parts.append(f'{past} segment(s) end after their video\'s '
                         'duration, kept as in the source (training clips '
                         'them)')
        print_log('; '.join(parts), logger=logger)
    return database

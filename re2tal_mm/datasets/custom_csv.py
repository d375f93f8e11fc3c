"""Your own videos: a CSV of ``video, start, end, label`` -> ActivityNet-style.

The CSV has a header row naming at least the columns ``video``, ``start``,
``end`` and ``label`` (any order, more columns allowed); one row a segment::

    video,start,end,label
    kitchen_01.mp4,3.5,9.25,pour
    kitchen_01.mp4,12.0,15.5,stir
    kitchen_02.mp4,0.0,4.0,pour
    kitchen_03.mp4,,,

``video`` is a file name inside the video folder (with its extension, or
without it: then the one file ``<video>.*`` of a known video extension);
the video's id is the file name without its extension; a row with empty
``start``, ``end`` and ``label`` lists a video without actions. ``start`` /
``end`` are seconds on the video's clock. Each video's duration and fps
are read from its header with
:class:`~re2tal_mm.datasets.video_reader.PyAVVideoReader` (no decoding).
Subsets come from a column of the CSV (e.g. ``subset``) or from a seeded
split ratio of the videos. Any bad row or file stops the conversion with an
error naming the row (its line in the CSV) or the file.
"""
import csv
import os
import os.path as osp
from collections import Counter, OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from re2tal_mm.structures.reporting import name_some

#: the CSV's required columns
COLUMNS = ('video', 'start', 'end', 'label')
#: extensions tried for a ``video`` given without one
VIDEO_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v')


def read_class_file(path: str) -> List[str]:
    """A class list: one name a line, in label index order."""
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f if line.strip()]
    dup = [c for c, n in Counter(names).items() if n > 1]
    if dup:
        raise ValueError(f'{path}: classes listed twice: {name_some(dup)}')
    if not names:
        raise ValueError(f'{path}: no class names')
    return names


def _number(row: dict, key: str, where: str) -> float:
    try:
        value = float(row[key])
    except (TypeError, ValueError):
        raise ValueError(f'{where}: {key} {row[key]!r} is not a number '
                         '(seconds)') from None
    if not np.isfinite(value):
        raise ValueError(f'{where}: {key} {row[key]!r} is not finite')
    return value


def _find_video(video_dir: str, name: str, where: str) -> str:
    """The file of CSV entry ``name`` in ``video_dir``."""
    path = osp.join(video_dir, name)
    if osp.splitext(name)[1] and osp.isfile(path):
        return path
    found = [path + ext for ext in VIDEO_EXTENSIONS
             if osp.isfile(path + ext)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f'{where}: video {name!r} matches several files: '
                         f'{found} (give the extension)')
    raise FileNotFoundError(f'{where}: video file {path!r} not found'
                            + ('' if osp.splitext(name)[1] else
                               f' (tried the extensions '
                               f'{", ".join(VIDEO_EXTENSIONS)})'))


def probe_video(path: str) -> Tuple[float, float, int]:
    """``(duration s, fps, frames)`` of a video file from its header."""
    from .video_reader import PyAVVideoReader
    try:
        reader = PyAVVideoReader(path)
    except Exception as err:  # av errors, no stream, no rate
        raise IOError(f'cannot read the header of video {path!r}: '
                      f'{err}') from err
    frames, fps = len(reader), reader.get_avg_fps()
    reader.close()
    if frames <= 0:
        raise IOError(f'video {path!r} reports no frames')
    return frames / fps, fps, frames


def _check_subset(entry: dict, row: dict, column: Optional[str],
                  video: str, where: str) -> None:
    if not column:
        return
    subset = row[column].strip()
    if not subset:
        raise ValueError(f'{where}: empty {column!r}')
    if entry['subset'] not in (None, subset):
        raise ValueError(f'{where}: video {video!r} in subset {subset!r}, '
                         f'but in {entry["subset"]!r} at line '
                         f'{entry["first"]}')
    entry['subset'] = subset


def read_segment_csv(csv_file: str, subset_column: Optional[str] = None
                     ) -> 'OrderedDict[str, dict]':
    """The CSV's rows by video entry: ``{video: dict(rows, subset)}``
    (``rows``: ``(line, start, end, label)``), checked row by row."""
    if not osp.isfile(csv_file):
        raise FileNotFoundError(f'annotation CSV not found: {csv_file}')
    videos = OrderedDict()
    with open(csv_file, encoding='utf-8-sig', newline='') as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        needed = list(COLUMNS) + ([subset_column] if subset_column else [])
        missing = [c for c in needed if c not in header]
        if missing:
            raise ValueError(f'{csv_file}: header {header} lacks the '
                             f'column(s) {missing} (needed: {needed})')
        for row in reader:
            line = reader.line_num
            where = f'{csv_file} line {line}'
            if None in row or any(row[c] is None for c in header):
                raise ValueError(f'{where}: {len(header)} columns expected '
                                 f'({",".join(header)})')
            video, label = row['video'].strip(), row['label'].strip()
            if not video:
                raise ValueError(f'{where}: empty video')
            entry = videos.setdefault(video, dict(rows=[], subset=None,
                                                  first=line))
            _check_subset(entry, row, subset_column, video, where)
            if not (label or row['start'].strip() or row['end'].strip()):
                continue  # a video without actions
            if not label:
                raise ValueError(f'{where}: empty label (leave start, end '
                                 'and label all empty for a video without '
                                 'actions)')
            start, end = (_number(row, k, where) for k in ('start', 'end'))
            if start < 0 or end <= start:
                raise ValueError(f'{where}: segment [{start}, {end}] of '
                                 f'{video!r} needs 0 <= start < end')
            entry['rows'].append((line, start, end, label))
    if not videos:
        raise ValueError(f'{csv_file}: no rows')
    return videos


def split_videos(ids: Sequence[str], val_ratio: float, seed: int = 0,
                 names: Tuple[str, str] = ('training', 'validation')
                 ) -> Dict[str, str]:
    """A seeded split: ``round(len(ids) * val_ratio)`` videos (at least one
    when the ratio is > 0 and there are two videos or more) go to
    ``names[1]``, the rest to ``names[0]``; the same ids and seed give the
    same split whatever their order."""
    if not 0 <= val_ratio < 1:
        raise ValueError(f'val_ratio must be in [0, 1), got {val_ratio}')
    ordered = sorted(ids)
    num_val = int(round(len(ordered) * val_ratio))
    if val_ratio > 0 and len(ordered) > 1:
        num_val = min(max(1, num_val), len(ordered) - 1)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    val = {ordered[i] for i in perm[:num_val]}
    return {v: names[1] if v in val else names[0] for v in ordered}


def convert_segment_csv(csv_file: str, video_dir: str,
                        classes: Optional[Sequence[str]] = None,
                        subset_column: Optional[str] = None,
                        val_ratio: float = 0.2, seed: int = 0,
                        logger: Optional[Any] = None
                        ) -> Tuple['OrderedDict[str, dict]', List[str], str]:
    """A CSV of ``video, start, end, label`` and a folder of videos ->
    ActivityNet-style database.

    Args:
        csv_file (str): The CSV (header ``video,start,end,label``, more
            columns allowed).
        video_dir (str): The folder of the videos.
        classes (Sequence[str], optional): The class list (label index
            order); a label not in it is an error. Defaults to None: the
            sorted labels of the CSV.
        subset_column (str, optional): A column giving each video's subset
            (e.g. ``training`` / ``validation``). Defaults to None: a seeded
            split by ``val_ratio``.
        val_ratio (float): Fraction of the videos in ``validation`` when no
            ``subset_column``. Defaults to 0.2.
        seed (int): Seed of that split. Defaults to 0.
        logger (str | logging.Logger, optional): Where the summary goes, as
            for ``print_log``. Defaults to None (printed).

    Returns:
        tuple: the database (``id -> dict(subset, duration, fps,
        annotations)``, ids = file names without extension), the class list
        and the videos' file extension (the dataset's ``suffix``).
    """
    if not osp.isdir(video_dir):
        raise FileNotFoundError(f'video folder not found: {video_dir}')
    entries = read_segment_csv(csv_file, subset_column)
    labels = sorted({r[3] for e in entries.values() for r in e['rows']})
    if classes is None:
        classes = labels
    classes = list(classes)
    known = set(classes)
    for video, entry in entries.items():
        for line, _, _, label in entry['rows']:
            if label not in known:
                raise ValueError(f'{csv_file} line {line}: label {label!r} '
                                 f'of {video!r} is not in the class list '
                                 f'({len(classes)} classes)')
    files, by_id = {}, {}
    for video, entry in entries.items():
        path = _find_video(video_dir, video,
                           f'{csv_file} line {entry["first"]}')
        vid = osp.splitext(osp.basename(path))[0]
        if vid in by_id and by_id[vid] != path:
            raise ValueError(f'{csv_file}: videos {by_id[vid]!r} and '
                             f'{path!r} have the same id {vid!r}')
        by_id[vid], files[video] = path, path
    suffixes = Counter(osp.splitext(p)[1] for p in files.values())
    if len(suffixes) > 1:
        raise ValueError(f'{video_dir}: the videos have different '
                         f'extensions {dict(suffixes)}; the dataset reads '
                         'one (convert them, e.g. with ffmpeg, to one)')
    (suffix, ) = suffixes
    subsets = ({v: e['subset'] for v, e in entries.items()} if subset_column
               else split_videos(list(entries), val_ratio, seed))
    database, past = OrderedDict(), Counter()
    for video, entry in entries.items():
        path = files[video]
        duration, fps, _ = probe_video(path)
        anns = []
        for line, start, end, label in entry['rows']:
            if start >= duration:
                raise ValueError(f'{csv_file} line {line}: segment [{start},'
                                 f' {end}] starts after the end of {path!r} '
                                 f'({duration:.3f} s)')
            past[subsets[video]] += end > duration
            anns.append(dict(segment=[start, end], label=label))
        vid = osp.splitext(osp.basename(path))[0]
        database[vid] = dict(subset=subsets[video], duration=duration,
                             fps=fps, annotations=anns)
    _summarize(csv_file, video_dir, database, classes, suffix, past,
               subset_column, val_ratio, seed, logger)
    return database, classes, suffix


def _summarize(csv_file, video_dir, database, classes, suffix, past,
               subset_column, val_ratio, seed, logger) -> None:
    groups = OrderedDict()
    for vid, info in database.items():
        groups.setdefault(info['subset'], []).append(vid)
    how = (f'column {subset_column!r}' if subset_column else
           f'split ratio {val_ratio} (seed {seed})')
    for subset, vids in groups.items():
        anns = [a for v in vids for a in database[v]['annotations']]
        empty = sum(not database[v]['annotations'] for v in vids)
        hours = sum(database[v]['duration'] for v in vids) / 3600
        print_log(f'{subset}: {len(vids)} videos ({hours:.2f} h), '
                  f'{len(anns)} segments, '
                  f'{len({a["label"] for a in anns})} of {len(classes)} '
                  f'classes present' +
                  (f'; {empty} video(s) without actions' if empty else '') +
                  (f'; {past[subset]} segment(s) end after their video '
                   '(kept; training clips them)' if past[subset] else ''),
                  logger=logger)
    listed = {vid + suffix for vid in database}
    unused = sorted(f for f in os.listdir(video_dir)
                    if osp.splitext(f)[1] in VIDEO_EXTENSIONS
                    and f not in listed)
    print_log(f'read {csv_file}: subsets by {how}; duration and fps from '
              f'each video\'s header; suffix {suffix!r}; dropped nothing'
              + (f'; {len(unused)} video file(s) in {video_dir} have no '
                 f'row (left out): {name_some(unused, limit=3)}'
                 if unused else ''),
              logger=logger)

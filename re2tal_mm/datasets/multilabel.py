"""Dense multi-label datasets: Charades and MultiTHUMOS.

Both label overlapping segments of many classes in the same video; every
segment is kept as it is in the source (overlaps, duplicates, segments past
the video's end and reversed ones: training clips and drops, the report
counts them). Times are seconds in both sources.

- Charades (``Charades_v1_{train,test}.csv`` of the official release):
  one row a video, ``id``, ``length`` (seconds), ``actions`` =
  ``;``-separated ``cNNN start end``; 157 classes ``c000`` .. ``c156``
  (named by ``Charades_v1_classes.txt``, ``cNNN name`` a line, when given).
- MultiTHUMOS (the release's ``annotations/<class>.txt``, one file a
  class, lines ``video_name start end`` in seconds, over the THUMOS-14
  validation and test videos; ``class_list.txt`` ``index name`` a line
  gives the class order when present); the subset is the video's
  (``video_validation_*`` -> ``validation``, ``video_test_*`` ->
  ``test``), durations and fps come from a THUMOS-14 JSON of
  ``tools/data/convert_thumos.py`` when given.
"""
import csv
import glob
import os.path as osp
from collections import Counter, OrderedDict
from typing import Any, List, Mapping, Optional, Tuple

from mmengine.logging import print_log

from re2tal_mm.structures.reporting import name_some

from .annotations import load_json

#: Charades' class ids, ``c000`` .. ``c156``
CHARADES_CLASSES = tuple(f'c{i:03d}' for i in range(157))


def _oddities(info: dict) -> Tuple[int, int]:
    """Segments past the video's end, segments with end <= start."""
    dur = info.get('duration')
    anns = info['annotations']
    past = 0 if dur is None else sum(a['segment'][1] > dur for a in anns)
    return past, sum(a['segment'][1] <= a['segment'][0] for a in anns)


def _report(subset: str, source: str, database: dict, vids: List[str],
            classes_present: int, assumed: str, dropped: str,
            logger: Optional[Any]) -> None:
    past = bad = 0
    for v in vids:
        p, b = _oddities(database[v])
        past, bad = past + p, bad + b
    segs = sum(len(database[v]['annotations']) for v in vids)
    empty = sum(not database[v]['annotations'] for v in vids)
    print_log(
        f'{subset}: read {source}: {len(vids)} videos, {segs} segments, '
        f'{classes_present} classes present; assumed: {assumed}; dropped: '
        f'{dropped}' + (f'; {empty} video(s) without segments (kept)'
                        if empty else '')
        + (f'; {past} segment(s) end after the video\'s duration, kept '
           '(training clips them)' if past else '')
        + (f'; {bad} segment(s) with end <= start, kept (training drops '
           'them)' if bad else ''), logger=logger)


def read_charades_classes(path: Optional[str]) -> List[str]:
    """``Charades_v1_classes.txt`` (``cNNN name``) -> names by id; the ids
    themselves without a file."""
    if path is None:
        return list(CHARADES_CLASSES)
    names = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.strip():
                cid, _, name = line.strip().partition(' ')
                names[cid] = name.strip() or cid
    missing = [c for c in CHARADES_CLASSES if c not in names]
    if missing:
        raise ValueError(f'{path}: classes {name_some(missing)} missing '
                         f'({len(names)} read; expected c000..c156)')
    return [names[c] for c in CHARADES_CLASSES]


def convert_charades(annotation_csvs: Mapping[str, str],
                     classes_file: Optional[str] = None,
                     logger: Optional[Any] = None
                     ) -> Tuple['OrderedDict[str, dict]', List[str]]:
    """Charades CSVs -> ActivityNet-style database (multi-label, kept).

    Args:
        annotation_csvs (Mapping[str, str]): subset -> CSV, e.g.
            ``{'training': 'Charades_v1_train.csv', 'testing':
            'Charades_v1_test.csv'}``.
        classes_file (str, optional): ``Charades_v1_classes.txt``; labels
            are its names. Defaults to None: labels ``c000`` .. ``c156``.
        logger (str | logging.Logger, optional): Where the per-subset
            report goes, as for ``print_log``. Defaults to None (printed).

    Returns:
        tuple: database (``id -> dict(subset, duration, annotations)``,
        ``duration`` = the file's ``length``) and the 157 class labels.
    """
    names = read_charades_classes(classes_file)
    index = dict(zip(CHARADES_CLASSES, names))
    database = OrderedDict()
    for subset, path in annotation_csvs.items():
        if not osp.isfile(path):
            raise FileNotFoundError(f'Charades file not found: {path}')
        vids, present = [], set()
        with open(path, encoding='utf-8') as f:
            for row in csv.DictReader(f):
                vid = row['id']
                if vid in database:
                    raise ValueError(f'{path}: video {vid!r} twice (also '
                                     f'in {database[vid]["subset"]!r})')
                anns = []
                for item in filter(None, row['actions'].split(';')):
                    parts = item.split()
                    if len(parts) != 3 or parts[0] not in index:
                        raise ValueError(f'{path}: video {vid!r}: action '
                                         f'{item!r} is not "cNNN start end"')
                    anns.append(dict(segment=[float(parts[1]),
                                              float(parts[2])],
                                     label=index[parts[0]]))
                    present.add(parts[0])
                database[vid] = dict(subset=subset,
                                     duration=float(row['length']),
                                     annotations=anns)
                vids.append(vid)
        _report(subset, osp.basename(path), database, vids, len(present),
                "nothing (duration = 'length'; fps not in the file, read "
                'from the video)', 'nothing', logger)
    return database, names


def read_class_list(path: str) -> List[str]:
    """``class_list.txt`` (``index name`` a line) -> names in index
    order."""
    rows = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.strip():
                idx, name = line.split(None, 1)
                rows.append((int(idx), name.strip()))
    return [name for _, name in sorted(rows)]


def _thumos_subset(vid: str) -> str:
    for subset in ('validation', 'test'):
        if vid.startswith(f'video_{subset}_'):
            return subset
    raise ValueError(f'video {vid!r} is not a THUMOS-14 validation or test '
                     'video (video_validation_* / video_test_*)')


def convert_multithumos(annotation_dir: str,
                        thumos_json: Optional[str] = None,
                        logger: Optional[Any] = None
                        ) -> Tuple['OrderedDict[str, dict]', List[str]]:
    """MultiTHUMOS per-class files -> ActivityNet-style database.

    Args:
        annotation_dir (str): the release's folder of ``<class>.txt``
            files (``video start end`` a line); a ``class_list.txt``
            beside them or in its parent gives the class order, else the
            sorted file names.
        thumos_json (str, optional): A THUMOS-14 ActivityNet-style JSON
            (``tools/data/convert_thumos.py``) giving each video's
            ``duration`` and ``fps``. Defaults to None: duration = the last
            segment end (ASSUMED, reported), fps left out.
        logger (str | logging.Logger, optional): Where the per-subset
            report goes. Defaults to None (printed).

    Returns:
        tuple: database (``video -> dict(subset, duration, fps?,
        annotations)``, segments in class-file order per video) and the
        class names.
    """
    files = sorted(p for p in glob.glob(osp.join(annotation_dir, '*.txt'))
                   if osp.basename(p) not in ('class_list.txt',
                                              'README.txt'))
    if not files:
        raise FileNotFoundError(f'no <class>.txt file in {annotation_dir}')
    by_name = {osp.splitext(osp.basename(p))[0]: p for p in files}
    listed = [p for p in (osp.join(annotation_dir, 'class_list.txt'),
                          osp.join(osp.dirname(osp.abspath(annotation_dir)),
                                   'class_list.txt')) if osp.isfile(p)]
    classes = read_class_list(listed[0]) if listed else sorted(by_name)
    unknown = sorted(set(by_name) - set(classes))
    if unknown or set(classes) - set(by_name):
        raise ValueError(f'{annotation_dir}: class files {unknown} are not '
                         f'in the class list, or classes '
                         f'{sorted(set(classes) - set(by_name))} have no '
                         'file')
    meta = {}
    if thumos_json is not None:
        meta = load_json(thumos_json).get('database', {})
    database = OrderedDict()
    for name in classes:
        with open(by_name[name], encoding='utf-8') as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 3:
                    raise ValueError(f'{by_name[name]} line {n}: expected '
                                     f'"video start end", got {line!r}')
                vid = parts[0]
                entry = database.setdefault(vid, dict(
                    subset=_thumos_subset(vid), annotations=[]))
                entry['annotations'].append(dict(
                    segment=[float(parts[1]), float(parts[2])],
                    label=name))
    assumed = Counter()
    for vid, entry in database.items():
        if vid in meta and meta[vid].get('duration') is not None:
            entry['duration'] = float(meta[vid]['duration'])
            if meta[vid].get('fps') is not None:
                entry['fps'] = float(meta[vid]['fps'])
        else:
            entry['duration'] = max(a['segment'][1]
                                    for a in entry['annotations'])
            assumed[entry['subset']] += 1
    groups = OrderedDict()
    for vid, entry in database.items():
        groups.setdefault(entry['subset'], []).append(vid)
    for subset in sorted(groups):
        vids = groups[subset]
        present = {a['label'] for v in vids
                   for a in database[v]['annotations']}
        n = assumed[subset]
        src = osp.basename(thumos_json) if thumos_json else None
        what = ('nothing (duration and fps from ' + str(src) + ')' if not n
                else f'duration = last segment end, no fps, for {n} '
                f'video(s) ' + (f'not in {src}' if src else
                                '(no THUMOS-14 JSON given)'))
        _report(subset, f'{len(files)} class files', database, vids,
                len(present), what, 'nothing', logger)
    return database, classes

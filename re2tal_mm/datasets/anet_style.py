"""ActivityNet-style JSON files of other datasets: writing one with its
class list, and the HACS Segments / FineAction releases."""
import json
import os
import os.path as osp
from collections import Counter, OrderedDict
from typing import Any, List, Mapping, Optional, Tuple

from mmengine.logging import print_log

from .annotations import load_json


def dump_tal_json(database: Mapping, path: str, version: str,
                  classes: Optional[List[str]] = None) -> str:
    """Write ``database`` as the ActivityNet-style JSON ``TALDataset``
    reads, with ``classes`` (label index order) when given; the folder is
    created. Returns a one-line summary (videos per subset)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    data = dict(version=version, database=database)
    if classes is not None:
        data['classes'] = list(classes)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    counts = Counter(str(v.get('subset')) for v in database.values())
    n_cls = '' if classes is None else f', {len(classes)} classes'
    return f'wrote {path}: {dict(counts)} videos{n_cls}'


def _classes_of(database: Mapping, path: str) -> List[str]:
    """Labels by their ``label_id`` when every annotation has one
    (FineAction), else sorted (HACS, as ActivityNet)."""
    ids = {}
    anns = [a for v in database.values() for a in v.get('annotations', [])]
    if anns and all('label_id' in a for a in anns):
        for a in anns:
            if ids.setdefault(int(a['label_id']), a['label']) != a['label']:
                raise ValueError(f'{path}: label_id {a["label_id"]} names '
                                 f'{ids[int(a["label_id"])]!r} and '
                                 f'{a["label"]!r}')
        return [ids[i] for i in sorted(ids)]
    return sorted({a['label'] for a in anns})


def convert_anet_style_release(path: str, dataset: str,
                               logger: Optional[Any] = None
                               ) -> Tuple['OrderedDict[str, dict]',
                                          List[str]]:
    """An ActivityNet-style release (HACS Segments v1.1.1's
    ``HACS_segments_v1.1.1.json``, FineAction's ``annotations_gt.json``)
    -> (database in our layout, class list).

    Its own subsets (``training`` / ``validation`` / ``testing``), ids,
    durations (``duration``, seconds) and segments are kept; ``fps`` is
    kept when the file has it; per annotation only ``segment`` and
    ``label`` (and ``label_id``) are kept. The class list is ordered by
    ``label_id`` when every annotation has one (FineAction's 106), else the
    sorted labels (HACS's 200, as ActivityNet). The per-subset report says
    what was read, assumed and dropped (nothing), with zero-length and
    past-the-end segments (kept; training drops / clips them, OpenTAD's
    evaluator drops zero-length ones, the official ones keep them).

    Args:
        path (str): The release's JSON (``database`` key).
        dataset (str): Its name, for the report.
        logger (str | logging.Logger, optional): Where the report goes.
            Defaults to None (printed).
    """
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get('database'),
                                                    dict):
        raise ValueError(f'{path}: expected an ActivityNet-style JSON with '
                         'a "database" dict')
    database = OrderedDict()
    for vid, info in data['database'].items():
        for key in ('subset', 'duration'):
            if key not in info:
                raise KeyError(f'{path}: video {vid!r} has no {key!r}')
        entry = dict(subset=info['subset'], duration=float(info['duration']))
        if info.get('fps') is not None:
            entry['fps'] = float(info['fps'])
        entry['annotations'] = [
            dict(segment=[float(a['segment'][0]), float(a['segment'][1])],
                 label=a['label'],
                 **({'label_id': int(a['label_id'])} if 'label_id' in a
                    else {}))
            for a in info.get('annotations') or []]
        database[vid] = entry
    classes = _classes_of(database, path)
    groups = OrderedDict()
    for vid, info in database.items():
        groups.setdefault(info['subset'], []).append(vid)
    for subset, vids in groups.items():
        anns = [(database[v]['duration'], a) for v in vids
                for a in database[v]['annotations']]
        zero = sum(a['segment'][1] <= a['segment'][0] for _, a in anns)
        past = sum(a['segment'][1] > d for d, a in anns)
        empty = sum(not database[v]['annotations'] for v in vids)
        fps = sum('fps' in database[v] for v in vids)
        print_log(
            f'{dataset} {subset}: read {osp.basename(path)}: {len(vids)} '
            f'videos, {len(anns)} segments, '
            f'{len({a["label"] for _, a in anns})} classes present; '
            f'duration from the file, fps from the file for {fps} (others: '
            'read from the video); assumed: nothing; dropped: nothing'
            + (f'; {empty} video(s) without annotations' if empty else '')
            + (f'; {zero} segment(s) with end <= start, kept' if zero
               else '')
            + (f'; {past} segment(s) end after the video\'s duration, kept'
               if past else ''), logger=logger)
    return database, classes

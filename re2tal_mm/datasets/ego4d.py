"""Ego4D Moment Queries: ``moments_{train,val}.json`` -> ActivityNet-style.

The release's layout (Ego4D episodic memory, ``moments_*.json``)::

    {"videos": [{"video_uid": str, "split": "train" | "val" | "test",
                 "clips": [{"clip_uid": str, "video_start_sec": float,
                            "video_end_sec": float,
                            "annotations": [{"annotator_uid": str,
                                             "labels": [{"start_time": s,
                                                         "end_time": e,
                                                         "label": str,
                                                         "primary": bool,
                                                         ...}]}]}]}]}

One database entry per clip (keyed by ``clip_uid``; videos are never
localized whole), its duration ``video_end_sec - video_start_sec``, each
primary label of every annotator a segment ``[start_time, end_time]``
(seconds relative to the clip, as the release gives them). Non-primary
labels are dropped and counted.
"""
import os.path as osp
from collections import OrderedDict
from typing import Any, List, Mapping, Optional, Tuple

from mmengine.logging import print_log

from re2tal_mm.structures.reporting import name_some

from .annotations import load_json

#: the release's split names -> our subsets
EGO4D_SUBSETS = dict(train='train', val='validation', test='test')


def convert_ego4d_mq(moments_jsons: Mapping[str, str],
                     classes: Optional[List[str]] = None,
                     logger: Optional[Any] = None
                     ) -> Tuple['OrderedDict[str, dict]', List[str]]:
    """Ego4D MQ files -> (database, class list).

    Args:
        moments_jsons (Mapping[str, str]): subset -> ``moments_<split>.json``
            (e.g. ``{'train': ..., 'validation': ...}``).
        classes (list[str], optional): The class list (label index order).
            Defaults to None: the sorted labels of all the files given.
        logger (str | logging.Logger, optional): Where the per-subset
            report goes. Defaults to None (printed).
    """
    database = OrderedDict()
    for subset, path in moments_jsons.items():
        data = load_json(path)
        if not isinstance(data, dict) or 'videos' not in data:
            raise ValueError(f'{path}: expected Ego4D moments JSON with a '
                             '"videos" list')
        clips = segs = non_primary = 0
        videos = set()
        present = set()
        for video in data['videos']:
            for clip in video.get('clips', []):
                cid = clip['clip_uid']
                if cid in database:
                    raise ValueError(f'{path}: clip {cid!r} twice')
                duration = float(clip['video_end_sec']) - float(
                    clip['video_start_sec'])
                anns = []
                for ann in clip.get('annotations', []):
                    for lb in ann.get('labels', []):
                        if not lb.get('primary', True):
                            non_primary += 1
                            continue
                        anns.append(dict(
                            segment=[float(lb['start_time']),
                                     float(lb['end_time'])],
                            label=lb['label']))
                        present.add(lb['label'])
                database[cid] = dict(subset=subset, duration=duration,
                                     video_uid=video['video_uid'],
                                     clip_start_sec=float(
                                         clip['video_start_sec']),
                                     annotations=anns)
                clips += 1
                segs += len(anns)
                videos.add(video['video_uid'])
        print_log(
            f'{subset}: read {osp.basename(path)}: {len(videos)} videos, '
            f'{clips} clips (one entry each), {segs} primary segments, '
            f'{len(present)} classes present; duration = video_end_sec - '
            'video_start_sec, segments start_time/end_time (clip seconds); '
            'assumed: nothing; dropped: '
            + (f'{non_primary} non-primary label(s)' if non_primary
               else 'nothing'), logger=logger)
    names = sorted({a['label'] for v in database.values()
                    for a in v['annotations']})
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ValueError(f'labels {name_some(unknown)} are not in '
                             'the class list given')
        names = list(classes)
    return database, names

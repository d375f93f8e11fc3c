"""ActivityNet-style annotation files: the converters into that layout.

The layout and its reading, checking and writing live in
:mod:`re2tal_mm.structures.activitynet` (shared with the metric); they are
re-exported here, where they have always been imported from.

The converters turn the BSN-style ActivityNet-1.3 files and the G-TAD-style
THUMOS-14 CSV files into this layout (ids without ``v_``), segments as in the
source files: clipping to the video is done when training reads them
(``load_activitynet_json(clip=True)``), never for evaluation.
"""
import csv
import os.path as osp
from collections import Counter, OrderedDict, defaultdict
from typing import Any, Dict, Optional, Sequence, Union

from mmengine.logging import print_log

from re2tal_mm.structures.activitynet import (  # noqa: F401 (re-exported)
    MAX_NAMED_SEGMENTS, class_names_of, clean_segments, dump_activitynet_json,
    load_activitynet_json, load_json, strip_prefix)
from re2tal_mm.structures.reporting import name_some

#: THUMOS-14 test videos whose annotations are known to be wrong; G-TAD and
#: most THUMOS tooling leave them out (210 test videos remain).
THUMOS_BAD_VIDEOS = ('video_test_0000270', 'video_test_0001496')


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
                f'{name_some(guessed, limit=3, quote=False)}; a video runs '
                'longer than its last segment: tools/data/check_dataset.py '
                'compares with the files)')
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

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
import os.path as osp
import warnings
from collections import OrderedDict

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


def clean_segments(database, source='<memory>'):
    """Clip segments to ``[0, duration]`` and drop the empty ones, in place.

    Returns:
        tuple[int, int]: numbers of clipped and dropped segments (both also
        reported in one warning).
    """
    clipped = dropped = 0
    for vid, info in database.items():
        duration = info.get('duration')
        kept = []
        for ann in info.get('annotations', []):
            s, e = float(ann['segment'][0]), float(ann['segment'][1])
            if duration is not None and (s < 0 or e > float(duration)):
                s, e = max(s, 0.0), min(e, float(duration))
                clipped += 1
            if e <= s:
                dropped += 1
                continue
            kept.append(dict(ann, segment=[s, e]))
        info['annotations'] = kept
    if clipped or dropped:
        warnings.warn(f'{source}: {clipped} segment(s) outside their video '
                      f'were clipped, {dropped} with end <= start were '
                      'dropped')
    return clipped, dropped


def load_activitynet_json(path, subset=None, class_names=None, clip=True):
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
        clean_segments(database, path)
    return database


def class_names_of(database):
    """Sorted labels present in ``database``."""
    return sorted({a['label'] for v in database.values()
                   for a in v['annotations']})


def dump_activitynet_json(database, path, version='converted'):
    """Write ``database`` as ActivityNet-style JSON."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(dict(version=version, database=database), f)


def convert_bsn_activitynet(anno_json, info_csv):
    """BSN-style ActivityNet-1.3 files -> ActivityNet-style database.

    Args:
        anno_json (str): ``anet_anno_action.json`` (``v_<id>`` ->
            duration_second, annotations).
        info_csv (str): ``video_info_new.csv`` (video, numFrame, seconds, fps,
            rfps, subset, featureFrame).
    """
    anno = load_json(anno_json)
    if not osp.isfile(info_csv):
        raise FileNotFoundError(f'video info file not found: {info_csv}')
    database = OrderedDict()
    with open(info_csv, encoding='utf-8') as f:
        for row in csv.DictReader(f):
            key = row['video']
            if key not in anno:
                raise KeyError(f'{info_csv}: video {key!r} missing from '
                               f'{anno_json}')
            a = anno[key]
            database[strip_prefix(key)] = dict(
                subset=row['subset'],
                duration=float(a.get('duration_second', row['seconds'])),
                fps=float(row['fps']),
                num_frames=int(row['numFrame']),
                annotations=[dict(segment=[float(x['segment'][0]),
                                           float(x['segment'][1])],
                                  label=x['label'])
                             for x in a.get('annotations', [])])
    # segments are kept as in the source (the official evaluators use them
    # so); TALDataset clips them for training, with a warning
    return database


def convert_gtad_thumos(annotation_csvs, groundtruth_csv,
                        exclude=THUMOS_BAD_VIDEOS):
    """G-TAD-style THUMOS-14 CSVs -> ActivityNet-style database.

    ``Ambiguous`` segments go to each video's ``ambiguous`` list, never among
    the labelled annotations.

    Args:
        annotation_csvs (dict[str, str]): subset name -> CSV
            (video, type, type_idx, start, end, startFrame, endFrame).
        groundtruth_csv (str): ``thumos14_test_groundtruth.csv`` giving
            video-duration and frame-rate of test videos. Videos it does not
            list take their duration from the last segment end and 30 fps.
        exclude (Sequence[str]): Video ids left out.
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
    for subset, path in annotation_csvs.items():
        if not osp.isfile(path):
            raise FileNotFoundError(f'annotation file not found: {path}')
        with open(path, encoding='utf-8') as f:
            for row in csv.DictReader(f):
                vid = row['video']
                if vid in exclude:
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
    for vid, info in list(database.items()):
        if not info['annotations']:
            del database[vid]  # only ambiguous segments: nothing to detect
            continue
        ends = [a['segment'][1] for a in info['annotations']] + [
            s[1] for s in info['ambiguous']]
        info['duration'], info['fps'] = meta.get(vid, (max(ends), 30.0))
    # segments are kept as in the source (see convert_bsn_activitynet)
    return database

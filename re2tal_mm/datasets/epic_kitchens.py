"""EPIC-Kitchens-100 action detection: annotations and submissions.

The official files (github.com/epic-kitchens/epic-kitchens-100-annotations):
``EPIC_100_{train,validation}.csv`` (one narrated action segment a row:
``video_id``, ``start_timestamp`` / ``stop_timestamp`` as ``HH:MM:SS.ff``,
``start_frame`` / ``stop_frame``, ``verb_class``, ``noun_class``),
``EPIC_100_verb_classes.csv`` / ``EPIC_100_noun_classes.csv`` (``id``,
``key``) and ``EPIC_100_video_info.csv`` (``video_id``, ``duration``,
``fps``).

Times are the timestamps in seconds, as the challenge's evaluator
(``EvaluationCode/evaluate_detection_json_ek100.py`` of
github.com/epic-kitchens/C2-Action-Detection, ``timestamp_to_seconds``)
reads them; the frame numbers count at a nominal rate that differs from the
video's (e.g. 60 for 59.94 fps videos) and are only compared, in the report.
The three tasks label a segment by its verb class, its noun class, or its
action, the (verb, noun) pair, whose official id is ``verb * 300 + noun``.
"""
import csv
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mmengine.logging import print_log

from .annotations import load_json

TASKS = ('verb', 'noun', 'action')
#: the number of noun classes of the challenge (``--noun-count``), which
#: makes an action id ``verb * NUM_NOUNS + noun``
NUM_NOUNS = 300
#: frame numbers farther than this from their timestamp are counted
FRAME_TOLERANCE_S = 0.1


def timestamp_to_seconds(timestamp: str) -> float:
    """``'HH:MM:SS.ff'`` -> seconds, as the official evaluator computes
    them (same operations, same float)."""
    try:
        hours, minutes, seconds = map(float, timestamp.split(':'))
    except ValueError as err:
        raise ValueError(f'timestamp {timestamp!r} is not HH:MM:SS.ff'
                         ) from err
    return hours * 60 * 60 + minutes * 60 + seconds


def _read_csv(path: str, required: Sequence[str]) -> List[dict]:
    if not osp.isfile(path):
        raise FileNotFoundError(f'EPIC-Kitchens file not found: {path}')
    with open(path, encoding='utf-8') as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f'{path}: column(s) {missing} missing (has '
                             f'{reader.fieldnames})')
        return list(reader)


def read_epic_classes(path: str) -> List[str]:
    """``EPIC_100_{verb,noun}_classes.csv`` -> keys in id order (ids must
    be 0..n-1)."""
    rows = _read_csv(path, ('id', 'key'))
    keys = {}
    for row in rows:
        keys[int(row['id'])] = row['key']
    if sorted(keys) != list(range(len(keys))):
        raise ValueError(f'{path}: class ids are not 0..{len(keys) - 1}')
    return [keys[i] for i in range(len(keys))]


def read_epic_video_info(path: str) -> Dict[str, Tuple[float, float]]:
    """``EPIC_100_video_info.csv`` -> ``video_id -> (duration, fps)``."""
    return {r['video_id']: (float(r['duration']), float(r['fps']))
            for r in _read_csv(path, ('video_id', 'duration', 'fps'))}


def action_id(verb: int, noun: int, num_nouns: int = NUM_NOUNS) -> int:
    """The challenge's action id of a (verb, noun) pair."""
    return int(verb) * num_nouns + int(noun)


def task_label_id(row: Mapping, task: str, num_nouns: int = NUM_NOUNS
                  ) -> int:
    """The official class id of a segment (``verb_class`` /
    ``noun_class`` fields) for ``task``."""
    if task == 'verb':
        return int(row['verb_class'])
    if task == 'noun':
        return int(row['noun_class'])
    if task == 'action':
        return action_id(row['verb_class'], row['noun_class'], num_nouns)
    raise ValueError(f'unknown EPIC-Kitchens task {task!r}; expected one '
                     f'of {TASKS}')


def convert_epic_kitchens(annotation_csvs: Mapping[str, str],
                          verb_classes: str, noun_classes: str,
                          video_info: str, task: str,
                          logger: Optional[Any] = None
                          ) -> Tuple['OrderedDict[str, dict]', List[str]]:
    """EPIC-Kitchens-100 CSVs -> ActivityNet-style database of one task.

    Every segment is kept as in the file (training clips to the video);
    each annotation keeps ``narration_id``, ``verb_class`` and
    ``noun_class`` besides its ``segment`` (seconds from the timestamps) and
    ``label`` (the verb key, the noun key, or ``'verb,noun'`` keys for the
    action). Per subset the report says what was read (rows, videos,
    segments, classes present), where duration and fps come from, segments
    past their video's end and frame numbers that disagree with the
    timestamps (reported, never used).

    Args:
        annotation_csvs (Mapping[str, str]): subset name -> CSV
            (``EPIC_100_train.csv``, ``EPIC_100_validation.csv``).
        verb_classes (str): ``EPIC_100_verb_classes.csv``.
        noun_classes (str): ``EPIC_100_noun_classes.csv``.
        video_info (str): ``EPIC_100_video_info.csv``.
        task (str): ``'verb'``, ``'noun'`` or ``'action'``.
        logger (str | logging.Logger, optional): Where the report goes, as
            for ``print_log``. Defaults to None (printed).

    Returns:
        tuple: the database (``video_id -> dict(subset, duration, fps,
        annotations)``) and the class list: the 97 verb keys, the 300 noun
        keys, or, for actions, the (verb, noun) pairs present in the files,
        in action-id order.
    """
    if task not in TASKS:
        raise ValueError(f'unknown EPIC-Kitchens task {task!r}; expected '
                         f'one of {TASKS}')
    verbs, nouns = read_epic_classes(verb_classes), read_epic_classes(
        noun_classes)
    info = read_epic_video_info(video_info)
    database = OrderedDict()
    pairs = set()
    required = ('narration_id', 'video_id', 'start_timestamp',
                'stop_timestamp', 'start_frame', 'stop_frame', 'verb_class',
                'noun_class')
    for subset, path in annotation_csvs.items():
        rows = _read_csv(path, required)
        off_frames = past = 0
        vids, present = OrderedDict(), set()
        for row in rows:
            vid = row['video_id']
            if vid not in info:
                raise KeyError(f'{path}: video {vid!r} (narration '
                               f'{row["narration_id"]}) is not in '
                               f'{video_info}')
            verb, noun = int(row['verb_class']), int(row['noun_class'])
            if not 0 <= verb < len(verbs) or not 0 <= noun < len(nouns):
                raise ValueError(
                    f'{path}: narration {row["narration_id"]} has verb '
                    f'{verb} / noun {noun}, outside the {len(verbs)} verb / '
                    f'{len(nouns)} noun classes of {verb_classes} / '
                    f'{noun_classes}')
            duration, fps = info[vid]
            entry = database.get(vid)
            if entry is None:
                entry = database[vid] = dict(
                    subset=subset, duration=duration, fps=fps,
                    annotations=[])
            elif entry['subset'] != subset:
                raise ValueError(f'video {vid!r} is in subset '
                                 f'{entry["subset"]!r} and in {path}')
            start = timestamp_to_seconds(row['start_timestamp'])
            stop = timestamp_to_seconds(row['stop_timestamp'])
            label = (verbs[verb] if task == 'verb' else nouns[noun]
                     if task == 'noun' else f'{verbs[verb]},{nouns[noun]}')
            entry['annotations'].append(dict(
                segment=[start, stop], label=label,
                narration_id=row['narration_id'], verb_class=verb,
                noun_class=noun))
            vids[vid] = True
            present.add(label)
            pairs.add((verb, noun))
            off_frames += (
                abs(int(row['start_frame']) / fps - start) > FRAME_TOLERANCE_S
                or abs(int(row['stop_frame']) / fps - stop) >
                FRAME_TOLERANCE_S)
            past += stop > duration
        print_log(
            f'{subset}: read {len(rows)} rows of {osp.basename(path)}: '
            f'{len(vids)} videos, {len(rows)} segments, {len(present)} '
            f'{task} classes present; seconds from start/stop_timestamp; '
            f'duration and fps from {osp.basename(video_info)}; nothing '
            'assumed; nothing dropped'
            + (f'; {past} segment(s) end after their video\'s duration, '
               'kept (training clips them)' if past else '')
            + (f'; {off_frames} segment(s) whose start/stop_frame / fps is '
               f'more than {FRAME_TOLERANCE_S:g} s from the timestamp '
               '(frame numbers unused)' if off_frames else ''),
            logger=logger)
    if task == 'verb':
        classes = verbs
    elif task == 'noun':
        classes = nouns
    else:
        classes = [f'{verbs[v]},{nouns[n]}' for v, n in sorted(pairs)]
    return database, classes


def load_epic_ground_truth(path: str, task: str,
                           num_nouns: int = NUM_NOUNS,
                           subset: Optional[str] = None
                           ) -> 'OrderedDict[str, dict]':
    """Ground truth for the challenge's metric, labelled by official id.

    Args:
        path (str): the challenge's CSV (``EPIC_100_validation.csv``) or a
            JSON written by :func:`convert_epic_kitchens` (its annotations
            carry ``verb_class`` / ``noun_class``).
        task (str): ``'verb'``, ``'noun'`` or ``'action'``.
        num_nouns (int): Makes the action id. Defaults to 300.
        subset (str | None): For a JSON, the subset kept (all if None).

    Returns:
        OrderedDict: ``video_id -> {"annotations": [{"segment", "label"}]}``
        in file order, labels the task's class id as a string.
    """
    task_label_id({'verb_class': 0, 'noun_class': 0}, task)  # checks task
    database = OrderedDict()
    if path.endswith('.json'):
        data = load_json(path)
        items = data.get('database', {}) if isinstance(data, dict) else {}
        for vid, info in items.items():
            if subset is not None and info.get('subset') != subset:
                continue
            anns = []
            for a in info.get('annotations', []):
                if 'verb_class' not in a or 'noun_class' not in a:
                    raise ValueError(
                        f'{path}: an annotation of video {vid!r} has no '
                        'verb_class / noun_class (convert with '
                        'tools/data/convert_epic_kitchens.py)')
                anns.append(dict(segment=[float(x) for x in a['segment']],
                                 label=str(task_label_id(a, task,
                                                         num_nouns))))
            database[vid] = dict(info, annotations=anns)
        if not database:
            raise ValueError(f'{path}: no video in subset {subset!r}')
        return database
    for row in _read_csv(path, ('video_id', 'start_timestamp',
                                'stop_timestamp', 'verb_class',
                                'noun_class')):
        entry = database.setdefault(row['video_id'], dict(annotations=[]))
        entry['annotations'].append(dict(
            segment=[timestamp_to_seconds(row['start_timestamp']),
                     timestamp_to_seconds(row['stop_timestamp'])],
            label=str(task_label_id(row, task, num_nouns))))
    return database


def epic_predictions(results: Mapping[str, Sequence[dict]], task: str,
                     num_nouns: int = NUM_NOUNS
                     ) -> 'OrderedDict[str, List[dict]]':
    """Submission entries -> ``{video: [{segment, score, label}]}``.

    An entry is ``{"segment": [s, e], "verb": int, "noun": int, "action":
    "verb,noun", "score": float}``; its label for ``task`` is the official
    class id (as a string). A missing field raises an error naming the
    entry.
    """
    task_label_id({'verb_class': 0, 'noun_class': 0}, task)
    out = OrderedDict()
    for vid, entries in results.items():
        preds = out[vid] = []
        for i, e in enumerate(entries):
            missing = [k for k in ('segment', 'score', task) if k not in e]
            if missing:
                raise KeyError(f'entry {i} of video {vid!r} has no '
                               f'{missing} (the challenge\'s submission '
                               'format: segment, verb, noun, action, '
                               'score)')
            if task == 'action':
                try:
                    verb, noun = (int(x) for x in str(e['action']).split(','))
                except ValueError as err:
                    raise ValueError(
                        f'entry {i} of video {vid!r}: action '
                        f'{e["action"]!r} is not "verb,noun"') from err
                label = action_id(verb, noun, num_nouns)
            else:
                label = int(e[task])
            preds.append(dict(segment=[float(e['segment'][0]),
                                       float(e['segment'][1])],
                              score=float(e['score']), label=str(label)))
    return out

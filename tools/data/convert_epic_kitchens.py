"""Convert EPIC-Kitchens-100 CSVs to ActivityNet-style JSON (verb, noun,
action).

One JSON per task, ``<out_dir>/epic_kitchens_100_<task>.json``, with the
task's class list (``classes``: the 97 verb keys, the 300 noun keys, or the
(verb, noun) pairs present as ``'verb,noun'`` keys) and, per annotation,
``segment`` (seconds, from the timestamps), ``label``, ``narration_id``,
``verb_class`` and ``noun_class`` (what ``tools/eval_detection.py --protocol
epic-kitchens-100`` reads). Durations and frame rates come from
``EPIC_100_video_info.csv``. Per subset the tool says what it read, assumed
and dropped.

Example (``data_root`` = ``data/epic_kitchens_100``)::

    D=../shared/data/epic-kitchens-100
    python tools/data/convert_epic_kitchens.py data/epic_kitchens_100 \\
        --val $D/EPIC_100_validation.csv --train $D/EPIC_100_train.csv \\
        --verb-classes $D/EPIC_100_verb_classes.csv \\
        --noun-classes $D/EPIC_100_noun_classes.csv \\
        --video-info $D/EPIC_100_video_info.csv
"""
import argparse
import collections
import json
import os
import os.path as osp

from re2tal_mm.datasets.epic_kitchens import TASKS, convert_epic_kitchens


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='output folder (created)')
    parser.add_argument('--train', help='EPIC_100_train.csv (subset "train")')
    parser.add_argument('--val', help='EPIC_100_validation.csv (subset '
                        '"validation")')
    parser.add_argument('--verb-classes', required=True,
                        help='EPIC_100_verb_classes.csv')
    parser.add_argument('--noun-classes', required=True,
                        help='EPIC_100_noun_classes.csv')
    parser.add_argument('--video-info', required=True,
                        help='EPIC_100_video_info.csv')
    parser.add_argument('--tasks', nargs='+', choices=TASKS,
                        default=list(TASKS), help='(default: all three)')
    args = parser.parse_args(argv)
    csvs = {k: v for k, v in (('train', args.train),
                              ('validation', args.val)) if v}
    if not csvs:
        parser.error('give --train and/or --val')
    os.makedirs(args.out_dir, exist_ok=True)
    written = {}
    for task in args.tasks:
        print(f'task {task}:')
        database, classes = convert_epic_kitchens(
            csvs, args.verb_classes, args.noun_classes, args.video_info,
            task)
        out = osp.join(args.out_dir, f'epic_kitchens_100_{task}.json')
        with open(out, 'w', encoding='utf-8') as f:
            json.dump(dict(version=f'EPIC-Kitchens-100 {task}',
                           classes=classes, database=database), f)
        counts = collections.Counter(v['subset'] for v in database.values())
        print(f'wrote {out}: {dict(counts)} videos, {len(classes)} classes')
        written[task] = out
    return written


if __name__ == '__main__':
    main()

"""Convert Ego4D Moment Queries annotations to ActivityNet-style JSON.

One entry per clip (``clip_uid``), segments relative to the clip, primary
labels, the clip's duration; the class list is the sorted labels (or
``--classes``, one a line). Per subset the tool says what it read, assumed
and dropped.

Example (``data_root`` = ``data/ego4d``)::

    python tools/data/convert_ego4d_mq.py data/ego4d/ego4d_mq.json \\
        --train ego4d_data/v2/annotations/moments_train.json \\
        --val ego4d_data/v2/annotations/moments_val.json
"""
import argparse

from re2tal_mm.datasets.anet_style import dump_tal_json
from re2tal_mm.datasets.ego4d import convert_ego4d_mq


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='output JSON (its folder is created)')
    parser.add_argument('--train', help='moments_train.json (subset '
                        '"train")')
    parser.add_argument('--val', help='moments_val.json (subset '
                        '"validation")')
    parser.add_argument('--classes', help='class names, one a line '
                        '(default: the sorted labels)')
    args = parser.parse_args(argv)
    files = {k: v for k, v in (('train', args.train),
                               ('validation', args.val)) if v}
    if not files:
        parser.error('give --train and/or --val')
    classes = None
    if args.classes:
        with open(args.classes, encoding='utf-8') as f:
            classes = [line.strip() for line in f if line.strip()]
    database, names = convert_ego4d_mq(files, classes)
    print(dump_tal_json(database, args.out, 'Ego4D MQ', names))
    return args.out


if __name__ == '__main__':
    main()

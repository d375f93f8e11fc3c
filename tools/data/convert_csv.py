"""Convert your own CSV of ``video, start, end, label`` to our JSON.

The CSV's header names at least ``video,start,end,label`` (seconds); the
videos are in one folder (``video`` = a file name, with or without its
extension). Ids are the file names without extension; each video's duration
and fps are read from its header; classes are the sorted labels or those of
``--classes`` (one a line, label index order); subsets come from a column
(``--subset-column``) or a seeded split (``--val-ratio``). Any bad row or
file stops it with an error naming the row or file; a summary is printed.
See docs/custom_dataset.md.

Example::

    python tools/data/convert_csv.py my_segments.csv data/mine/videos \\
        data/mine/annotations.json --val-ratio 0.2
"""
import argparse
import sys

from re2tal_mm.datasets.anet_style import dump_tal_json
from re2tal_mm.datasets.custom_csv import convert_segment_csv, read_class_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('csv', help='CSV with columns video,start,end,label')
    parser.add_argument('video_dir', help='the folder of the videos')
    parser.add_argument('out', help='output JSON (its folder is created)')
    parser.add_argument('--classes', help='class list file, one name a line '
                        '(default: the sorted labels of the CSV)')
    parser.add_argument('--subset-column', help='CSV column giving each '
                        "video's subset (default: split by --val-ratio)")
    parser.add_argument('--val-ratio', type=float, default=0.2,
                        help='fraction of videos in "validation" when no '
                        '--subset-column')
    parser.add_argument('--seed', type=int, default=0, help='split seed')
    args = parser.parse_args(argv)
    try:
        classes = read_class_file(args.classes) if args.classes else None
        database, classes, suffix = convert_segment_csv(
            args.csv, args.video_dir, classes, args.subset_column,
            args.val_ratio, args.seed)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(dump_tal_json(database, args.out, 'custom', classes))
    print(f'in the config: num_classes = {len(classes)}'
          + ('' if suffix == '.mp4' else f", suffix = '{suffix}'"))
    return args.out


if __name__ == '__main__':
    main()

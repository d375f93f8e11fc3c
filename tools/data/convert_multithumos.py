"""Convert MultiTHUMOS annotations to ActivityNet-style JSON (multi-label).

Reads the release's per-class files (``annotations/<class>.txt``, lines
``video start end`` in seconds; ``class_list.txt`` gives the class order);
overlapping and multi-label segments are kept as they are. Subsets follow
the THUMOS-14 video names (``validation``, ``test``); durations and frame
rates come from a THUMOS-14 JSON of ``tools/data/convert_thumos.py``
(``--thumos-json``), else the last segment end is ASSUMED (reported).

Example (``data_root`` = ``data/multithumos``)::

    python tools/data/convert_multithumos.py \\
        data/multithumos/multithumos.json MultiTHUMOS/annotations \\
        --thumos-json data/thumos14/thumos14_gt.json
"""
import argparse

from re2tal_mm.datasets.anet_style import dump_tal_json
from re2tal_mm.datasets.multilabel import convert_multithumos


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='output JSON (its folder is created)')
    parser.add_argument('annotation_dir', help='folder of <class>.txt')
    parser.add_argument('--thumos-json', help='THUMOS-14 JSON with the '
                        'videos\' duration and fps (default: none)')
    args = parser.parse_args(argv)
    database, classes = convert_multithumos(args.annotation_dir,
                                            args.thumos_json)
    print(dump_tal_json(database, args.out, 'MultiTHUMOS', classes))
    return args.out


if __name__ == '__main__':
    main()

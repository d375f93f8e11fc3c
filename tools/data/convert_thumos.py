"""Convert G-TAD-style THUMOS-14 CSVs to ActivityNet-style JSON.

``Ambiguous`` segments are kept in each video's ``ambiguous`` list; segments
are kept as in the CSVs (training clips them to the video). The output folder
is created. Per subset, the tool says what it assumed: the THUMOS validation
videos (and any video ``--groundtruth`` does not list) get their duration
from their last segment end and 30 fps.

Example (the file the THUMOS-14 configs read, ``data_root`` =
``data/thumos14``)::

    D=../shared/data/thumos-14
    python tools/data/convert_thumos.py data/thumos14/thumos14_gt.json \\
        --val $D/val_Annotation.csv --test $D/test_Annotation.csv \\
        --groundtruth $D/thumos14_test_groundtruth.csv
"""
import argparse
import collections
import os
import os.path as osp

from re2tal_mm.datasets.annotations import (convert_gtad_thumos,
                                            dump_activitynet_json)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='output JSON (its folder is created); '
                        'the configs read <data_root>/thumos14_gt.json')
    parser.add_argument('--val',
                        help='val_Annotation.csv (subset "validation")')
    parser.add_argument('--test', help='test_Annotation.csv (subset "test")')
    parser.add_argument('--groundtruth', help='thumos14_test_groundtruth.csv '
                        '(durations and frame rates of the test videos; '
                        'without it they are assumed as for validation)')
    args = parser.parse_args(argv)
    csvs = {k: v for k, v in (('validation', args.val), ('test', args.test))
            if v}
    if not csvs:
        parser.error('give --val and/or --test')
    database = convert_gtad_thumos(csvs, args.groundtruth)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    dump_activitynet_json(database, args.out, 'THUMOS-14')
    counts = collections.Counter(v['subset'] for v in database.values())
    print(f'wrote {args.out}: {dict(counts)}')


if __name__ == '__main__':
    main()

"""Convert G-TAD-style THUMOS-14 CSVs to ActivityNet-style JSON.

``Ambiguous`` segments are kept in each video's ``ambiguous`` list.

Example::

    D=../shared/data/thumos-14
    python tools/data/convert_thumos.py thumos14_gt.json \
        --val $D/val_Annotation.csv --test $D/test_Annotation.csv \
        --groundtruth $D/thumos14_test_groundtruth.csv
"""
import argparse
import collections

from re2tal_mm.datasets.annotations import (convert_gtad_thumos,
                                            dump_activitynet_json)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='output JSON')
    parser.add_argument('--val',
                        help='val_Annotation.csv (subset "validation")')
    parser.add_argument('--test', help='test_Annotation.csv (subset "test")')
    parser.add_argument('--groundtruth', help='thumos14_test_groundtruth.csv')
    args = parser.parse_args(argv)
    csvs = {k: v for k, v in (('validation', args.val), ('test', args.test))
            if v}
    if not csvs:
        parser.error('give --val and/or --test')
    database = convert_gtad_thumos(csvs, args.groundtruth)
    dump_activitynet_json(database, args.out, 'THUMOS-14')
    counts = collections.Counter(v['subset'] for v in database.values())
    print(f'wrote {args.out}: {dict(counts)}')


if __name__ == '__main__':
    main()

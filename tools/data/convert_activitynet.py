"""Convert BSN-style ActivityNet-1.3 annotations to ActivityNet-style JSON.

Example::

    python tools/data/convert_activitynet.py \
        ../shared/data/activitynet-1.3/anet_anno_action.json \
        ../shared/data/activitynet-1.3/video_info_new.csv anet1.3_gt.json
"""
import argparse
import collections

from re2tal_mm.datasets.annotations import (convert_bsn_activitynet,
                                            dump_activitynet_json)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('anno_json', help='anet_anno_action.json')
    parser.add_argument('info_csv', help='video_info_new.csv')
    parser.add_argument('out', help='output JSON')
    args = parser.parse_args(argv)
    database = convert_bsn_activitynet(args.anno_json, args.info_csv)
    dump_activitynet_json(database, args.out, 'ActivityNet-1.3')
    counts = collections.Counter(v['subset'] for v in database.values())
    print(f'wrote {args.out}: {dict(counts)}')


if __name__ == '__main__':
    main()

"""Convert BSN-style ActivityNet-1.3 annotations to ActivityNet-style JSON.

Ids lose their ``v_`` prefix; segments are kept as in the source (training
clips them to the video). The output folder is created. Per subset, the tool
says where durations and frame rates came from.

Example (the file the ActivityNet-1.3 configs read, ``data_root`` =
``data/activitynet``)::

    D=../shared/data/activitynet-1.3
    python tools/data/convert_activitynet.py $D/anet_anno_action.json \\
        $D/video_info_new.csv data/activitynet/anet1.3_gt.json
"""
import argparse
import collections
import os
import os.path as osp

from re2tal_mm.datasets.annotations import (convert_bsn_activitynet,
                                            dump_activitynet_json)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('anno_json', help='anet_anno_action.json')
    parser.add_argument('info_csv', help='video_info_new.csv')
    parser.add_argument('out', help='output JSON (its folder is created); '
                        'the configs read <data_root>/anet1.3_gt.json')
    args = parser.parse_args(argv)
    database = convert_bsn_activitynet(args.anno_json, args.info_csv)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    dump_activitynet_json(database, args.out, 'ActivityNet-1.3')
    counts = collections.Counter(v['subset'] for v in database.values())
    print(f'wrote {args.out}: {dict(counts)}')


if __name__ == '__main__':
    main()

"""Convert an ActivityNet-style release (HACS Segments v1.1.1, FineAction)
to our ActivityNet-style JSON with its class list.

Subsets, ids, durations and segments are kept as in the release; the class
list is written (FineAction: by ``label_id``; HACS: sorted, as
ActivityNet). Per subset the tool says what it read, assumed and dropped.
Both are scored with the ActivityNet protocol (0.5:0.05:0.95).

Examples::

    python tools/data/convert_anet_style.py hacs \\
        HACS_segments_v1.1.1.json data/hacs/hacs_gt.json
    python tools/data/convert_anet_style.py fineaction \\
        annotations_gt.json data/fineaction/fineaction_gt.json
"""
import argparse

from re2tal_mm.datasets.anet_style import (convert_anet_style_release,
                                           dump_tal_json)

NAMES = dict(hacs='HACS Segments v1.1.1', fineaction='FineAction')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dataset', choices=sorted(NAMES))
    parser.add_argument('release_json', help='the release\'s JSON')
    parser.add_argument('out', help='output JSON (its folder is created)')
    args = parser.parse_args(argv)
    database, classes = convert_anet_style_release(args.release_json,
                                                   NAMES[args.dataset])
    print(dump_tal_json(database, args.out, NAMES[args.dataset], classes))
    return args.out


if __name__ == '__main__':
    main()

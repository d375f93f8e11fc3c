"""Evaluate an ActivityNet-style detection results file offline.

Example::

    python tools/eval_detection.py gt.json results.json --subset validation
"""
import argparse
import json
import time

from re2tal_mm.datasets.annotations import load_activitynet_json, load_json
from re2tal_mm.evaluation.functional import (ANET_TIOU_THRESHOLDS,
                                             evaluate_detection,
                                             format_ap_table)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('gt_json', help='ActivityNet-style ground truth')
    parser.add_argument('pred_json', help='results file ("results" key)')
    parser.add_argument('--subset', default='validation',
                        help='subset of the ground truth to evaluate '
                        '(default: validation; "all" for every video)')
    parser.add_argument('--tiou-thresholds', type=float, nargs='+',
                        default=list(ANET_TIOU_THRESHOLDS))
    parser.add_argument('--out', help='write the numbers as JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    subset = None if args.subset == 'all' else args.subset
    gt = load_activitynet_json(args.gt_json, subset=subset)
    preds = load_json(args.pred_json)
    if 'results' not in preds:
        raise ValueError(f'{args.pred_json}: no "results" key')
    result = evaluate_detection(gt, preds['results'], args.tiou_thresholds)
    elapsed = time.perf_counter() - start
    print(format_ap_table(result))
    print(f'average mAP: {100 * result["average_mAP"]:.2f} '
          f'({len(gt)} videos, evaluated in {elapsed:.3f} s)')
    if args.out:
        result.pop('num_ignored')
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()

"""Evaluate an ActivityNet-style detection results file offline.

The ground truth is used as it is in the file (no clipping), with the rules of
the official evaluators: ActivityNet's ``Evaluation/eval_detection.py``
(default) or THUMOS-14's ``TH14evalDet.m`` (``--protocol thumos14``); see
``re2tal_mm/evaluation/functional.py`` for the exact rules.

Examples::

    python tools/eval_detection.py anet_gt.json results.json
    python tools/eval_detection.py thumos_gt.json results.json --subset test \\
        --thumos-thresholds
    python tools/eval_detection.py thumos_gt.json results.json \\
        --protocol thumos14
    python tools/eval_detection.py EPIC_100_validation.csv results.json \\
        --protocol epic-kitchens-100 --task verb

``--protocol epic-kitchens-100`` is the challenge's evaluator
(``evaluate_detection_json_ek100.py`` of epic-kitchens/C2-Action-Detection):
the ground truth is its CSV (or a JSON of
``tools/data/convert_epic_kitchens.py``), the results are in its submission
format (``results``: video -> entries with ``segment``, ``verb``, ``noun``,
``action`` as ``"verb,noun"``, ``score``), and ``--task`` picks the label
scored (``verb``, ``noun`` or ``action`` = verb * 300 + noun).

A results file that cannot be scored right is not given a number quietly:

- no predicted video in the evaluated subset: stops with an error that lists
  the subsets of the ground truth and how many predicted videos each holds;
- result ids with a ``v_`` prefix that the ground truth lacks, or the other
  way round: the error (or, when some ids match anyway, a warning) names the
  fix, ``--strip-prefix v_`` or ``--add-prefix v_``. Ids are never renamed
  without one of these options: a number is only given for the file as it
  is, or as explicitly asked;
- predicted videos outside the subset (false positives, as in the official
  evaluator) and labels that are not ground-truth classes (ignored): scored,
  with a warning that counts and names them.
"""
import argparse
import json
import sys
import time
from collections import Counter, OrderedDict
from typing import Iterable, List, Mapping, Optional

from re2tal_mm.datasets.annotations import (clean_segments,
                                            load_activitynet_json, load_json)
from re2tal_mm.datasets.epic_kitchens import (NUM_NOUNS, TASKS,
                                              epic_predictions,
                                              load_epic_ground_truth)
from re2tal_mm.evaluation.functional import (PROTOCOLS, THUMOS_TIOU_THRESHOLDS,
                                             default_tiou_thresholds,
                                             evaluate_detection,
                                             format_ap_table)
from re2tal_mm.evaluation.recall import (EGO4D_TOP_K, recall_metrics,
                                         topkx_recall)
from re2tal_mm.structures.reporting import name_some

PREFIX = 'v_'  # ActivityNet ids are YouTube ids, files are v_<id>.mp4
DEFAULT_SUBSET = dict(thumos14='test')  # others: validation
EPIC = 'epic-kitchens-100'


def _fmt(thresholds):
    return ' '.join(f'{t:g}' for t in thresholds)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('gt_json', help='ActivityNet-style ground truth '
                        '("database" key)')
    parser.add_argument('pred_json', help='results file ("results" key)')
    parser.add_argument('--protocol', choices=PROTOCOLS,
                        default='activitynet',
                        help='evaluation rules: the official ActivityNet '
                        'evaluator, or THUMOS-14\'s TH14evalDet (ambiguous '
                        'regions spare false positives, ground-truth-first '
                        'matching with overlap > t, AP summed at true '
                        'positives), or a dataset\'s (ActivityNet\'s '
                        'rules with its thresholds; epic-kitchens-100: the '
                        'challenge\'s CSV and submission format) (default: '
                        'activitynet)')
    parser.add_argument('--task', choices=TASKS,
                        help='with --protocol epic-kitchens-100 (required '
                        'there): the label scored (default: none)')
    parser.add_argument('--num-nouns', type=int, default=NUM_NOUNS,
                        help='with --protocol epic-kitchens-100: action id = '
                        'verb * NUM_NOUNS + noun (default: %(default)s)')
    parser.add_argument('--subset', default=None,
                        help='subset of the ground truth to evaluate, "all" '
                        'for every video (default: validation; test with '
                        '--protocol thumos14, all for an EPIC-Kitchens '
                        'CSV)')
    thr = parser.add_mutually_exclusive_group()
    thr.add_argument('--tiou-thresholds', type=float, nargs='+',
                     metavar='T', default=None,
                     help='tIoU thresholds (default: '
                     f'{_fmt(default_tiou_thresholds("activitynet"))} with '
                     '--protocol activitynet, '
                     f'{_fmt(default_tiou_thresholds("thumos14"))} with '
                     '--protocol thumos14)')
    thr.add_argument('--thumos-thresholds', action='store_true',
                     help='use THUMOS-14\'s usual thresholds '
                     f'{_fmt(THUMOS_TIOU_THRESHOLDS)} (with either '
                     'protocol) (default: off)')
    parser.add_argument('--recall-top-k', type=int, nargs='*',
                        metavar='K', help='also Recall@kx for these k (none '
                        'given: none) (default: 1 5 with --protocol ego4d-mq, '
                        'none otherwise)')
    parser.add_argument('--strip-prefix', metavar='PREFIX',
                        help='strip PREFIX from the result video ids, e.g. '
                        f'"{PREFIX}" for ActivityNet results keyed by file '
                        'name (default: none)')
    parser.add_argument('--add-prefix', metavar='PREFIX',
                        help='prepend PREFIX to the result video ids '
                        '(default: none)')
    parser.add_argument('--clip-gt', action='store_true',
                        help='clip ground-truth segments to the video and '
                        'drop empty ones before evaluating; NOT the '
                        'official metric, only to compare with numbers made '
                        'that way (default: off)')
    parser.add_argument('--out', help='write the numbers as JSON here '
                        '(default: none)')
    return parser.parse_args(argv)


class _StderrLogger:
    """``warning()`` to stderr, for :func:`evaluate_detection`."""

    @staticmethod
    def warning(msg):
        print(f'WARNING: {msg}', file=sys.stderr)


def _load_results(path):
    preds = load_json(path)
    if not isinstance(preds, dict) or not isinstance(preds.get('results'),
                                                     dict):
        raise SystemExit(f'error: {path}: expected a results file with a '
                         '"results" dict (video id -> list of detections)')
    return preds['results']


def _rename(results, strip=None, add=None):
    """Apply ``--strip-prefix`` / ``--add-prefix`` to the result ids."""
    if not strip and not add:
        return results
    renamed = OrderedDict()
    for vid, preds in results.items():
        new = vid[len(strip):] if strip and vid.startswith(strip) else vid
        new = (add or '') + new
        renamed.setdefault(new, []).extend(preds)
    return renamed


def prefix_hint(pred_ids: Iterable[str], gt_ids: Mapping,
                prefix: str = PREFIX) -> Optional[str]:
    """How to fix result ids that match the ground truth only with
    ``prefix`` stripped or added (None if that does not help)."""
    unmatched = [v for v in pred_ids if v not in gt_ids]
    strip = [v for v in unmatched
             if v.startswith(prefix) and v[len(prefix):] in gt_ids]
    add = [v for v in unmatched if prefix + v in gt_ids]
    if len(strip) >= len(add) and strip:
        return (f'{len(strip)} result id(s) match videos of the ground truth '
                f'once their {prefix!r} prefix is stripped (e.g. '
                f'{strip[0]!r} -> {strip[0][len(prefix):]!r}): rerun with '
                f'--strip-prefix {prefix}')
    if add:
        return (f'{len(add)} result id(s) match videos of the ground truth '
                f'once {prefix!r} is prepended (e.g. {add[0]!r} -> '
                f'{prefix + add[0]!r}): rerun with --add-prefix {prefix}')
    return None


def _subsets_report(database, pred_ids):
    videos = Counter(str(v.get('subset')) for v in database.values())
    predicted = Counter(str(database[v].get('subset')) for v in pred_ids
                        if v in database)
    return ', '.join(f'{s!r} ({n} videos, {predicted[s]} predicted)'
                     for s, n in sorted(videos.items()))


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the evaluation; returns the result of ``evaluate_detection``."""
    args = parse_args(argv)
    start = time.perf_counter()
    epic = args.protocol == EPIC
    if epic != (args.task is not None):
        raise SystemExit('error: --task (verb, noun or action) goes with '
                         '--protocol epic-kitchens-100, and only with it')
    subset = args.subset or DEFAULT_SUBSET.get(args.protocol) or (
        'all' if epic and args.gt_json.endswith('.csv') else 'validation')
    thresholds = args.tiou_thresholds or (
        THUMOS_TIOU_THRESHOLDS if args.thumos_thresholds else
        default_tiou_thresholds(args.protocol))
    warn = _StderrLogger.warning
    results = _rename(_load_results(args.pred_json), args.strip_prefix,
                      args.add_prefix)
    if epic:
        database = load_epic_ground_truth(args.gt_json, args.task,
                                          args.num_nouns)
        results = epic_predictions(results, args.task, args.num_nouns)
    else:
        database = load_activitynet_json(args.gt_json, clip=False)
    gt = database if subset == 'all' else OrderedDict(
        (v, info) for v, info in database.items()
        if info.get('subset') == subset)
    pred_ids = [v for v, preds in results.items() if len(preds)]
    inside = [v for v in pred_ids if v in gt]
    hint = prefix_hint(pred_ids, database)
    if not inside:
        lines = [f'error: none of the {len(pred_ids)} predicted videos of '
                 f'{args.pred_json} is in subset {subset!r} of '
                 f'{args.gt_json} ({len(gt)} videos): every prediction would '
                 'be a false positive.']
        if hint:
            lines.append(hint + '.')
        lines.append(f'Subsets of {args.gt_json}: '
                     f'{_subsets_report(database, pred_ids)}; choose one '
                     'with --subset (or --subset all).')
        raise SystemExit('\n'.join(lines))
    outside = [v for v in pred_ids if v not in gt]
    if outside:
        n_preds = sum(len(results[v]) for v in outside)
        where = Counter(str(database[v].get('subset')) if v in database
                        else 'no subset: not in the ground truth'
                        for v in outside)
        warn(f'{len(outside)} of {len(pred_ids)} predicted videos are not in '
             f'subset {subset!r}; their {n_preds} predictions count as false '
             'positives (as in the official evaluator). They are in: ' +
             ', '.join(f'{s} ({n})' for s, n in where.most_common()) +
             f'. First: {name_some(outside)}')
        if hint:
            warn(hint)
    if args.clip_gt:
        warn('--clip-gt: ground-truth segments clipped to the video, not the '
             'official metric')
        clean_segments(gt, args.gt_json)
    result = evaluate_detection(gt, results, thresholds,
                                protocol=args.protocol,
                                logger=_StderrLogger,
                                warn_unseen_videos=False)
    top_k = (EGO4D_TOP_K if args.protocol == 'ego4d-mq' else ()) \
        if args.recall_top_k is None else args.recall_top_k
    if top_k:
        result['recall'] = recall_metrics(topkx_recall(gt, results,
                                                       thresholds, top_k))
    elapsed = time.perf_counter() - start
    print(format_ap_table(result))
    for name, value in result.get('recall', {}).items():
        print(f'{name}: {100 * value:.2f}')
    task = f', task {args.task}' if epic else ''
    print(f'average mAP: {100 * result["average_mAP"]:.2f} '
          f'({args.protocol} protocol{task}, subset {subset!r}: '
          f'{len(gt)} videos, {len(inside)} with predictions; evaluated '
          f'in {elapsed:.3f} s)')
    if args.out:
        keys = ('tiou_thresholds', 'mAP', 'average_mAP', 'per_class_AP',
                'protocol')
        with open(args.out, 'w') as f:
            json.dump(dict({k: result[k] for k in keys}, subset=subset,
                           clip_gt=args.clip_gt,
                           **(dict(task=args.task) if epic else {}),
                           **({'recall': result['recall']} if top_k else {})),
                      f,
                      indent=1)
    return result


if __name__ == '__main__':
    main()

"""Localize actions in a video file with a trained Re2TAL model.

    python demo/localize_video.py VIDEO CONFIG CHECKPOINT \
        [--out result.json] [--plot timeline.png] [--score-thr 0.1] \
        [--gt annotations.json]

Writes an ActivityNet-style results file
(``{"results": {video_id: [{"segment": [s, e], "score": x, "label": name}]}}``)
and, with ``--plot``, a timeline of the detected segments.
"""
import argparse
import json
import os.path as osp
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('video', help='video file')
    p.add_argument('config', help='model config file')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--out', default='result.json', help='results JSON')
    p.add_argument('--plot', default=None, help='timeline image (png)')
    p.add_argument('--score-thr', type=float, default=0.1,
                   help='keep detections scoring at least this')
    p.add_argument('--max-segments', type=int, default=100,
                   help='at most this many segments in the output')
    p.add_argument('--gt', default=None,
                   help='ActivityNet-style annotation JSON: draw this '
                   'video\'s ground truth on the timeline')
    p.add_argument('--device', default='cpu')
    return p.parse_args()


def load_ground_truth(ann_file, video_id):
    """The annotations of ``video_id`` in an ActivityNet-style JSON."""
    if ann_file is None:
        return None
    if not osp.isfile(ann_file):
        sys.exit(f'error: ground-truth file not found: {ann_file}')
    with open(ann_file) as f:
        database = json.load(f).get('database', {})
    if video_id not in database:
        print(f'warning: {video_id} is not in {ann_file}; no ground truth '
              'drawn')
        return None
    return database[video_id].get('annotations', [])


def main():
    args = parse_args()
    for what, path in (('video', args.video), ('config', args.config),
                       ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            sys.exit(f'error: {what} file not found: {path}')
    from re2tal_mm.apis import init_localizer, localize_video, plot_timeline
    model = init_localizer(args.config, args.checkpoint, device=args.device)
    try:
        result = localize_video(model, args.video, score_thr=args.score_thr)
    except (IOError, OSError, RuntimeError) as err:
        sys.exit(f'error: cannot localize actions in {args.video}: {err}')
    result['results'] = result['results'][:args.max_segments]
    with open(args.out, 'w') as f:
        json.dump(dict(version='re2tal_mm',
                       results={result['video_id']: result['results']},
                       external_data=dict(duration=result['duration'],
                                          fps=result['fps'])), f, indent=1)
    print(f'{len(result["results"])} segment(s) in {args.video} '
          f'({result["duration"]:.1f} s) -> {args.out}')
    for d in result['results'][:10]:
        print(f'  {d["segment"][0]:8.2f} {d["segment"][1]:8.2f} '
              f'{d["score"]:.3f} {d["label"]}')
    if args.plot:
        plot_timeline(result, args.plot, model.dataset_meta['classes'],
                      ground_truth=load_ground_truth(args.gt,
                                                     result['video_id']))
        print(f'timeline -> {args.plot}')


if __name__ == '__main__':
    main()

"""Extract ``T x C`` features of videos with any (rewired) MMAction2 backbone.

Each video is cut into sliding clips (``--clip-len`` frames,
``--frame-interval`` apart, one clip every ``--stride`` frames), resized
(shorter side to ``--size``, centre crop), normalized with the config's
``data_preprocessor`` mean / std, run through the config's backbone under
``torch.no_grad()``, pooled over space (``--spatial-pool``) and over the
clip's time steps (``--temporal-pool avg``; ``none`` keeps them). Writes,
per video, into ``--out``:

- ``<video_id>.npy``: ``T x C`` float32 features;
- ``<video_id>.json``: its manifest entry (fps, ``feature_stride`` in
  frames, ``center``, clip length and frame interval, config, checkpoint
  sha256, rewiring, feature dimension, number of features and frames...),

and at the end ``manifest.json`` (all entries) and ``failures.txt``
(``video_id<TAB>file<TAB>error`` of the videos that could not be decoded:
the others are extracted anyway, and the exit status is 1; an error of the
model stops the run). With ``--ann-file`` only the annotation's videos are
extracted; the fps is always the video container's.
``TALDataset(modality='Feature', data_prefix=dict(feature=OUT))`` with a
bare ``LoadTALFeature()`` reads the grid from the manifest: feature ``i``
stands for ``(i + center) * feature_stride / fps`` s.

CONFIG is an MMAction2 recognizer config (its ``model.backbone`` and
``data_preprocessor``; ``cls_head`` unused) or a ``TemporalActionLocalizer``
config with a backbone (built by ``init_localizer``: rewired as the
checkpoint records, with its ``spatial_pool``). CHECKPOINT may be ``none``
(initialization seeded by ``--seed``, for tests).

Resumable: a video whose ``.npy`` and entry exist and were made with the
same settings is skipped; files are written to a temporary name of the same
folder and moved into place (``os.replace``), so an interrupted run leaves
finished videos or nothing. Sharded: under ``torchrun`` (``RANK`` /
``WORLD_SIZE``) or with ``--shard i/n``, video ``k`` (sorted by id) goes to
process ``k % n``; no process group is needed.

Examples::

    python tools/extract_features.py CONFIG CHECKPOINT \\
        --video-dir data/thumos14/videos --out data/thumos14/my_features
    torchrun --nproc_per_node=4 tools/extract_features.py CONFIG CHECKPOINT \\
        --video-dir videos --ann-file ann.json --out features --batch-size 16
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Tuple

PREFIX = '[extract_features]'
FAILURES = 'failures.txt'
FAILURE_DIR = '.failures'  # one record per failed video, merged at the end


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='recognizer or localizer config')
    parser.add_argument('checkpoint',
                        help='checkpoint file, or "none" (random weights)')
    parser.add_argument('--video-dir', required=True,
                        help='folder of the videos')
    parser.add_argument('--out', required=True,
                        help='output folder (features and manifest)')
    parser.add_argument('--ann-file', default=None,
                        help='ActivityNet-style annotation: only its videos '
                        '(<video-dir>/<video_id><suffix>); default: every '
                        'video file of --video-dir')
    parser.add_argument('--subset', nargs='+', default=None,
                        help='with --ann-file: only these subsets '
                        '(default: all)')
    parser.add_argument('--suffix', default=None,
                        help='video file extension, e.g. .mp4 (default: '
                        'any common video extension)')
    parser.add_argument('--clip-len', type=int, default=16,
                        help='frames per clip (default: %(default)s)')
    parser.add_argument('--frame-interval', type=int, default=1,
                        help='frames between two sampled frames of a clip '
                        '(default: %(default)s)')
    parser.add_argument('--stride', type=int, default=None,
                        help='frames between two clip starts (default: '
                        'clip-len * frame-interval / 4 with '
                        '--temporal-pool avg, clip-len * frame-interval '
                        'with none)')
    parser.add_argument('--size', type=int, default=None,
                        help='resize the shorter side to SIZE, then crop '
                        'the centre SIZE x SIZE; 0 keeps the decoded '
                        'frames (default: the CenterCrop of the config\'s '
                        'test pipeline, else its square Resize, else 224)')
    parser.add_argument('--spatial-pool', choices=('avg', 'max', 'avgmax'),
                        default=None,
                        help='pooling over space (default: the localizer '
                        'config\'s spatial_pool, avg for a recognizer)')
    parser.add_argument('--temporal-pool', choices=('avg', 'none'),
                        default='avg',
                        help='avg: one feature per clip (mean over the '
                        'backbone\'s time steps); none: every time step '
                        '(clips must tile the video) (default: '
                        '%(default)s)')
    parser.add_argument('--batch-size', type=int, default=8,
                        help='clips per backbone call (default: '
                        '%(default)s)')
    parser.add_argument('--rewire', choices=('reversible', 'autograd',
                                             'none'), default=None,
                        help='rewire the backbone (default: as the '
                        'checkpoint records, else as the config says)')
    parser.add_argument('--device', default=None,
                        help='default: cuda:LOCAL_RANK when CUDA is '
                        'available, else cpu')
    parser.add_argument('--backends', nargs='+', default=['decord', 'pyav'],
                        choices=('decord', 'pyav'),
                        help='decoding backends, in order (default: '
                        'decord pyav)')
    parser.add_argument('--shard', default=None,
                        help='I/N: this process takes videos k with '
                        'k %% N == I (default: RANK/WORLD_SIZE of the '
                        'environment, else 0/1)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the weights when CHECKPOINT is none '
                        '(default: %(default)s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--overwrite', action='store_true',
                        help='re-extract videos done with other settings '
                        '(default: stop with an error naming them)')
    parser.add_argument('--max-videos', type=int, default=None,
                        help='stop after extracting this many videos (a '
                        'trial run; a rerun goes on)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    args = parser.parse_args(argv)
    for name in ('clip_len', 'frame_interval', 'batch_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.stride is not None and args.stride < 1:
        parser.error('--stride must be >= 1')
    span = args.clip_len * args.frame_interval
    if args.temporal_pool == 'none' and args.stride not in (None, span):
        parser.error('--temporal-pool none keeps every backbone step, so '
                     'clips must tile the video: --stride must be '
                     f'clip-len * frame-interval = {span}')
    return args


def shard_from(args) -> Tuple[int, int]:
    """``(rank, world_size)`` from ``--shard`` or the environment."""
    if args.shard:
        try:
            rank, world = (int(v) for v in args.shard.split('/'))
        except ValueError:
            raise SystemExit(f'--shard must be I/N, got {args.shard!r}')
    else:
        rank = int(os.environ.get('RANK', 0))
        world = int(os.environ.get('WORLD_SIZE', 1))
    if not 0 <= rank < world:
        raise SystemExit(f'shard {rank}/{world}: need 0 <= I < N')
    return rank, world


def default_size(cfg) -> int:
    """The crop of the config's test pipeline, else its square resize,
    else 224."""
    from re2tal_mm.rewiring.spec import config_type_name
    steps = []
    for key in ('test_dataloader', 'val_dataloader'):
        ds = (cfg.get(key) or {}).get('dataset') or {}
        steps = ds.get('pipeline') or []
        if steps:
            break
    steps = steps or cfg.get('test_pipeline') or []
    for kind in ('CenterCrop', 'Resize'):
        for step in steps:
            if not isinstance(step, dict) or config_type_name(step) != kind:
                continue
            size = step.get('crop_size' if kind == 'CenterCrop' else
                            'scale')
            if isinstance(size, int) and size > 0:
                return size
            if isinstance(size, (list, tuple)) and len(set(size)) == 1 \
                    and size[0] > 0:
                return int(size[0])
    return 224


def record_failure(out: str, video_id: str, video_file: str,
                   err: BaseException) -> None:
    from re2tal_mm.datasets.feature_manifest import write_json_atomic
    folder = osp.join(out, FAILURE_DIR)
    os.makedirs(folder, exist_ok=True)
    message = ' '.join(f'{type(err).__name__}: {err}'.split())
    write_json_atomic(osp.join(folder, video_id + '.json'),
                      dict(video_id=video_id, file=video_file,
                           error=message))


def clear_failure(out: str, video_id: str) -> None:
    try:
        os.remove(osp.join(out, FAILURE_DIR, video_id + '.json'))
    except FileNotFoundError:
        pass


def merge_failures(out: str) -> str:
    """``failures.txt`` from the failure records (the videos whose latest
    attempt failed), written atomically."""
    import glob
    import json

    from re2tal_mm.datasets.feature_manifest import replace_from_temp
    rows = []
    for path in sorted(glob.glob(osp.join(glob.escape(out), FAILURE_DIR,
                                          '*.json'))):
        try:
            with open(path, encoding='utf-8') as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        rows.append('\t'.join(str(rec.get(k, '')) for k in
                              ('video_id', 'file', 'error')))
    target = osp.join(out, FAILURES)
    if not rows:
        if osp.exists(target):
            os.remove(target)
        return target
    text = '# video_id\tfile\terror\n' + '\n'.join(rows) + '\n'
    replace_from_temp(target, lambda f: f.write(text.encode()))
    return target


def say(message: str) -> None:
    from tqdm import tqdm
    tqdm.write(f'{PREFIX} {message}', file=sys.stdout)
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    rank, world = shard_from(args)
    import torch
    from mmengine.config import Config
    from tqdm import tqdm

    from re2tal_mm.apis.features import (build_feature_extractor,
                                         extract_video_features,
                                         feature_settings, list_videos,
                                         shard_of)
    from re2tal_mm.datasets.feature_manifest import (MANIFEST_NAME,
                                                     finished_entry,
                                                     manifest_entry,
                                                     merge_manifest,
                                                     remove_stale_temps,
                                                     save_npy_atomic,
                                                     settings_digest,
                                                     sidecar_path,
                                                     write_json_atomic)
    from re2tal_mm.structures.reporting import name_some
    if args.threads:
        torch.set_num_threads(args.threads)
    videos = list_videos(args.video_dir, args.ann_file, args.subset,
                         args.suffix)
    if not videos:
        raise SystemExit(f'no video in {args.ann_file or args.video_dir}')
    clash = [v for v, _ in videos if v + '.json' == MANIFEST_NAME]
    if clash:
        raise SystemExit(f'a video named {clash[0]!r} would overwrite the '
                         f'merged {MANIFEST_NAME}; rename it')
    mine = shard_of(videos, rank, world)
    os.makedirs(args.out, exist_ok=True)
    cfg = Config.fromfile(args.config)
    size = default_size(cfg) if args.size is None else args.size
    device = args.device or (
        f'cuda:{os.environ.get("LOCAL_RANK", 0)}'
        if torch.cuda.is_available() else 'cpu')
    extractor = build_feature_extractor(
        args.config, args.checkpoint, device, rewiring=args.rewire,
        spatial_pool=args.spatial_pool, seed=args.seed)
    settings = feature_settings(extractor, args.clip_len,
                                args.frame_interval, args.stride, size,
                                args.temporal_pool)
    digest = settings_digest(settings)
    ann_fps = {}
    if args.ann_file:
        from re2tal_mm.datasets.annotations import load_json
        ann_fps = {k: v.get('fps') for k, v in
                   load_json(args.ann_file)['database'].items()
                   if isinstance(v, dict)}
    todo, done, other = [], [], []
    for vid, path in mine:
        state, _ = finished_entry(args.out, vid, digest)
        (done if state == 'done' else other if state == 'other' else
         todo).append((vid, path))
    if other and not args.overwrite:
        names = name_some([v for v, _ in other], quote=False)
        raise SystemExit(
            f'{len(other)} video(s) of {args.out} were extracted with other '
            f'settings (e.g. {names}); pass --overwrite to re-extract them, '
            'or choose another --out')
    todo = sorted(todo + other)
    say(f'shard {rank}/{world}: {len(mine)} of {len(videos)} videos, '
        f'{len(done)} already extracted, {len(todo)} to do; '
        f'{extractor.info["backbone"]} on {device}, clips of '
        f'{args.clip_len} x {args.frame_interval} frames every '
        f'{settings["clip_stride"]}, size {size}, '
        f'{extractor.spatial_pool} / {args.temporal_pool} pooling')
    for vid, _ in done:
        say(f'skip {vid} (already extracted)')
    failed, extracted, clips, busy = [], 0, 0, 0.0
    bar = tqdm(total=len(todo), unit='video', desc=f'shard {rank}/{world}',
               disable=args.no_progress, dynamic_ncols=True)

    def on_batch(n):
        nonlocal clips
        clips += n
        rate = clips / max(busy + time.time() - start, 1e-9)
        bar.set_postfix_str(f'{rate:.1f} clips/s', refresh=False)

    for vid, path in todo:
        if args.max_videos is not None and extracted >= args.max_videos:
            say(f'stopping after {extracted} videos (--max-videos)')
            break
        remove_stale_temps(args.out, vid)
        start = time.time()
        try:
            if not osp.isfile(path):
                raise FileNotFoundError(f'video file not found: {path}')
            feats, info = extract_video_features(
                extractor, path, args.clip_len, args.frame_interval,
                args.stride, size, args.temporal_pool, args.batch_size,
                args.backends, on_batch=on_batch)
            entry = manifest_entry(vid, path, info, extractor, settings)
            theirs = ann_fps.get(vid)
            if theirs and abs(float(theirs) - info['fps']) > 1e-3:
                entry['annotation_fps'] = float(theirs)
                say(f'note: {vid}: the annotation says {theirs} fps, the '
                    f'video {info["fps"]:g} fps; the manifest records the '
                    'video\'s (the frames the features were made from)')
            save_npy_atomic(osp.join(args.out, vid + '.npy'), feats)
            write_json_atomic(sidecar_path(args.out, vid), entry)
            clear_failure(args.out, vid)
            extracted += 1
            say(f'done {vid}: {feats.shape[0]} x {feats.shape[1]} features '
                f'from {info["num_clips"]} clips ({time.time() - start:.1f}'
                ' s)')
        except OSError as err:  # undecodable: logged, extraction goes on
            failed.append(vid)
            record_failure(args.out, vid, path, err)
            say(f'FAILED {vid} ({path}): {type(err).__name__}: {err}')
        except Exception as err:  # the model or the settings: stop
            record_failure(args.out, vid, path, err)
            merge_failures(args.out)
            say(f'FAILED {vid} ({path}) outside decoding: '
                f'{type(err).__name__}: {err}; stopping (an error of the '
                'model or the settings would fail every video)')
            raise
        finally:
            busy += time.time() - start
            bar.update()
    bar.close()
    manifest = merge_manifest(args.out)
    failures = merge_failures(args.out)
    rate = clips / busy if busy else 0.0
    say(f'shard {rank}/{world}: extracted {extracted}, skipped {len(done)}, '
        f'failed {len(failed)} ({clips} clips, {rate:.1f} clips/s); '
        f'manifest: {manifest}')
    if failed:
        say(f'{len(failed)} video(s) could not be extracted: see {failures}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Check the videos (or features) of a config's datasets before training.

For every video of the chosen dataloaders' datasets: the file exists, opens
(container metadata: duration, fps, frame count, size; PyAV, decord as a
fallback), its first and last frames decode, its duration and fps agree with
the annotation, and its annotated segments end inside it. Feature datasets
(``modality='Feature'``): each ``.npy`` loads as a ``T x C`` array of finite
numbers, of the same C as the others.

Writes ``report.json`` (a row per video), ``report.txt`` (a summary and the
problem videos) and ``skip_list.txt`` (the unusable videos, one id per line,
for the dataset's ``skip_list``) under ``--out-dir``. Exits with status 1 if
any video is unusable (missing or undecodable; with ``--skip-mismatched``
also a duration or fps mismatch), else 0.

Example::

    python tools/data/check_dataset.py CONFIG --workers 8 --out-dir OUT
    # then train without the unusable videos
    mim train mmaction2 CONFIG --cfg-options \\
        train_dataloader.dataset.skip_list=OUT/skip_list.txt
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
import traceback
from collections import Counter, OrderedDict
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

import numpy as np

SPLITS = ('train', 'val', 'test')
#: Statuses, from the worst; a row's status is its worst problem.
STATUSES = ('missing', 'undecodable', 'duration_mismatch', 'fps_mismatch',
            'ok')
UNUSABLE = ('missing', 'undecodable')


# --------------------------------------------------------------- datasets


def _leaf_datasets(cfg) -> list:
    """Dataset configs inside wrappers (``dataset=``, ``datasets=[]``)."""
    if cfg is None:
        return []
    if 'datasets' in cfg:
        return [d for sub in cfg['datasets'] for d in _leaf_datasets(sub)]
    if 'dataset' in cfg and 'ann_file' not in cfg:
        return _leaf_datasets(cfg['dataset'])
    return [cfg]


def apply_runner_data_root(cfg) -> None:
    """Give the top-level ``data_root`` to the datasets, as the runner does.

    Only for configs with ``runner_type = 'DataRootRunner'`` (see
    :mod:`re2tal_mm.engine.data_root`), the runner that does it in training.
    """
    if cfg.get('runner_type') == 'DataRootRunner':
        from re2tal_mm.engine import apply_data_root
        apply_data_root(cfg)


def dataset_specs(cfg, splits: Sequence[str]) -> List[dict]:
    """The dataset configs of ``<split>_dataloader`` (pipelines not built).

    Args:
        cfg (Config): An MMEngine config.
        splits (Sequence[str]): Among ``'train'``, ``'val'``, ``'test'``.

    Returns:
        list[dict]: One per distinct dataset: ``ann_file``, ``subset``,
        ``modality``, ``suffix``, ``folder`` (``data_root`` applied),
        ``splits`` (the splits using it) and ``feature_stride`` / ``fps``
        of a ``LoadTALFeature`` in its pipeline config.
    """
    from re2tal_mm.datasets.tal_dataset import join_data_root
    from re2tal_mm.rewiring.spec import config_type_name
    specs = OrderedDict()
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for ds in _leaf_datasets(loader.get('dataset')):
            modality = ds.get('modality', 'RGB')
            feature = modality == 'Feature'
            root = ds.get('data_root') or None
            prefix = ds.get('data_prefix') or {}
            folder = prefix.get('feature' if feature else 'video', '') or ''
            subset = ds.get('subset')
            spec = dict(
                ann_file=join_data_root(root, ds['ann_file']),
                subset=list(subset) if isinstance(subset, (list, tuple))
                else subset,
                modality=modality,
                suffix=ds.get('suffix') or ('.npy' if feature else '.mp4'),
                folder=join_data_root(root, folder) or root or '')
            for t in ds.get('pipeline') or []:
                if isinstance(t, dict) and \
                        config_type_name(t) == 'LoadTALFeature':
                    spec.update(feature_stride=t.get('feature_stride', 1.0),
                                feature_fps=t.get('fps'))
            key = json.dumps(spec, sort_keys=True, default=str)
            specs.setdefault(key, dict(spec, splits=[]))['splits'].append(
                split)
    return list(specs.values())


def video_tasks(specs: List[dict]) -> List[dict]:
    """One task per distinct file of the datasets (annotations unclipped)."""
    from re2tal_mm.datasets.annotations import load_activitynet_json
    tasks = OrderedDict()
    for spec in specs:
        database = load_activitynet_json(spec['ann_file'], spec['subset'],
                                         clip=False)
        for vid, info in database.items():
            path = osp.join(spec['folder'], vid + spec['suffix'])
            task = tasks.get(path)
            if task is None:
                tasks[path] = task = dict(
                    video_id=vid, file=path, modality=spec['modality'],
                    subset=info.get('subset'), splits=[],
                    ann_duration=info.get('duration'),
                    ann_fps=info.get('fps'),
                    segments=[a['segment'] for a in info['annotations']],
                    feature_stride=spec.get('feature_stride'),
                    feature_fps=spec.get('feature_fps'))
            for split in spec['splits']:
                if split not in task['splits']:
                    task['splits'].append(split)
    return list(tasks.values())


# ------------------------------------------------------------------ videos


@contextmanager
def _captured_stderr():
    """Collect what C libraries write to fd 2 (e.g. decord's errors)."""
    import tempfile
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode='w+b') as tmp:
        os.dup2(tmp.fileno(), 2)
        out = []
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors='replace').strip())


def _probe_pyav(path: str) -> dict:
    """Metadata and the first / last frames of ``path`` with PyAV."""
    import av

    from re2tal_mm.datasets.video_reader import PyAVVideoReader, decode_ends
    try:
        av.logging.set_level(av.logging.PANIC)  # errors come as exceptions
    except AttributeError:  # pragma: no cover - older PyAV
        pass
    reader = PyAVVideoReader(path)
    try:
        return dict(decode_ends(reader), backend='pyav')
    except (IOError, IndexError) as exc:  # the reader's own, naming path
        raise ValueError(str(exc)) from exc
    finally:
        reader.close()


def _probe_decord(path: str) -> dict:
    import decord

    from re2tal_mm.datasets.video_reader import decode_ends
    failure = None
    with _captured_stderr() as captured:
        try:
            out = dict(decode_ends(decord.VideoReader(path, num_threads=1)),
                       backend='decord')
        except Exception as exc:  # noqa: BLE001 - decord's errors vary
            failure = exc
    if failure is not None:
        said = captured[0].splitlines()[-1] if captured[0] else ''
        raise ValueError(f'{type(failure).__name__}: {failure}'.strip() +
                         (f' ({said})' if said else ''))
    return out


def probe_video(path: str) -> dict:
    """Open ``path`` and decode its first and last frames.

    Args:
        path (str): A video file.

    Returns:
        dict: ``backend``, ``duration`` (s), ``fps``, ``frames``, ``width``,
        ``height``, ``last_frame`` and ``decoded_end`` (s).

    Raises:
        ValueError: Neither PyAV nor decord could open or decode it (the
            message gives both errors).
    """
    errors = []
    for probe in (_probe_pyav, _probe_decord):
        try:
            return probe(path)
        except ImportError as exc:
            errors.append(f'{probe.__name__[7:]}: not installed ({exc})')
        except Exception as exc:  # noqa: BLE001 - reported
            kind = '' if type(exc) is ValueError else \
                f'{type(exc).__name__}: '
            errors.append(f'{probe.__name__[7:]}: {kind}{exc}'.strip())
    raise ValueError('; '.join(errors))


def probe_feature(path: str, task: dict) -> dict:
    """Load a ``T x C`` feature file; its duration from the annotation's
    fps and the pipeline's ``feature_stride`` when known."""
    try:
        feat = np.load(path, mmap_mode='r')
    except Exception as exc:  # noqa: BLE001 - reported
        raise ValueError(f'cannot load: {type(exc).__name__}: {exc}')
    if feat.ndim != 2 or 0 in feat.shape:
        raise ValueError(f'expected a T x C array, got shape {feat.shape}')
    if not np.issubdtype(feat.dtype, np.number):
        raise ValueError(f'expected numbers, got dtype {feat.dtype}')
    if not np.isfinite(np.asarray(feat, dtype=np.float64)).all():
        raise ValueError('the features contain NaN or inf')
    out = dict(backend='numpy', steps=int(feat.shape[0]),
               channels=int(feat.shape[1]))
    fps = task.get('ann_fps') or task.get('feature_fps')
    stride = task.get('feature_stride')
    if fps and stride:
        out.update(fps=float(fps), duration=feat.shape[0] * stride / fps)
    return out


def check_one(task: dict, tol: dict) -> dict:
    """Check one video (or feature file) against its annotation.

    Args:
        task (dict): From :func:`video_tasks`.
        tol (dict): ``duration_s``, ``duration_ratio`` and ``fps_ratio``.

    Returns:
        dict: The report row: the task's fields, ``status``, ``problems``
        (all of them, worst first), ``error`` and the measured numbers.
    """
    start = time.perf_counter()
    row = dict(task)
    row.update(status='ok', problems=[], error=None)
    problems = []  # (status, text)
    path = task['file']
    if not osp.isfile(path):
        problems.append(('missing', f'file not found: {path}'))
    else:
        try:
            if task['modality'] == 'Feature':
                row.update(probe_feature(path, task))
            else:
                row.update(probe_video(path))
        except Exception as exc:  # noqa: BLE001 - the row says it
            problems.append(('undecodable', str(exc) or type(exc).__name__))
    duration, ann = row.get('duration'), task.get('ann_duration')
    if duration and ann is not None:
        allowed = max(tol['duration_s'], tol['duration_ratio'] * duration)
        if task['modality'] == 'Feature' and row.get('fps'):
            allowed = max(allowed, 2 * task['feature_stride'] / row['fps'])
        if abs(float(ann) - duration) > allowed:
            problems.append((
                'duration_mismatch',
                f'annotation duration {float(ann):.2f} s, video '
                f'{duration:.2f} s (off by {float(ann) - duration:+.2f} s, '
                f'more than {allowed:.2f} s)'))
    fps, ann_fps = row.get('fps'), task.get('ann_fps')
    if fps and ann_fps and task['modality'] != 'Feature' and \
            abs(float(ann_fps) - fps) > tol['fps_ratio'] * fps:
        problems.append(('fps_mismatch', f'annotation fps {ann_fps:g}, '
                                         f'video {fps:.3f}'))
    if duration:
        past = [s for s in task['segments'] if s[1] > duration + 1e-3]
        row['segments_past_end'] = len(past)
        row['segments_after_end'] = sum(s[0] >= duration for s in past)
        if past:
            shown = ', '.join(f'[{s:g}, {e:g}]' for s, e in past[:3])
            problems.append(('ok', f'{len(past)} of {len(task["segments"])} '
                             f'segment(s) end after the video '
                             f'({duration:.2f} s): {shown}'))
    problems.sort(key=lambda p: STATUSES.index(p[0]))
    if problems:
        row['status'] = min((p[0] for p in problems), key=STATUSES.index)
        if problems[0][0] in UNUSABLE:
            row['error'] = problems[0][1]
    row['problems'] = [text for _, text in problems]
    row['check_s'] = round(time.perf_counter() - start, 4)
    return row


def _check_safely(task: dict, tol: dict) -> dict:
    try:
        return check_one(task, tol)
    except Exception:  # noqa: BLE001 - a bug must not stop the others
        row = dict(task, status='undecodable', problems=[], check_s=None,
                   error='checker error: ' + traceback.format_exc(limit=3))
        row['problems'].append(row['error'])
        return row


def check_all(tasks: List[dict], tol: dict, workers: int = 1,
              progress: bool = True) -> List[dict]:
    """Rows of :func:`check_one` for ``tasks``, in their order.

    Args:
        tasks (list[dict]): From :func:`video_tasks`.
        tol (dict): Tolerances (see :func:`check_one`).
        workers (int): Processes (0 or 1: in this process). Defaults to 1.
        progress (bool): Show a tqdm progress bar (with an ETA) on stderr.
            Defaults to True.
    """
    from tqdm import tqdm
    bar = tqdm(total=len(tasks), unit='video', disable=not progress,
               desc='checking', dynamic_ncols=True)
    rows = [None] * len(tasks)
    try:
        if workers <= 1:
            for i, task in enumerate(tasks):
                rows[i] = _check_safely(task, tol)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_check_safely, task, tol): i
                           for i, task in enumerate(tasks)}
                for future in as_completed(futures):
                    rows[futures[future]] = future.result()
                    bar.update()
    finally:
        bar.close()
    _check_feature_channels(rows)
    return rows


def _check_feature_channels(rows: List[dict]) -> None:
    """Feature files whose C differs from the most common one: unusable."""
    channels = Counter(r['channels'] for r in rows if r.get('channels'))
    if len(channels) < 2:
        return
    common = channels.most_common(1)[0][0]
    for r in rows:
        if r.get('channels') not in (None, common):
            text = (f'{r["channels"]} channels, the other files '
                    f'{common}: cannot be batched with them')
            r.update(status='undecodable', error=text,
                     problems=[text] + r['problems'])


# ------------------------------------------------------------------ report


def _num(value, fmt='.2f'):
    return '-' if value is None else format(float(value), fmt)


def format_report(rows: List[dict], meta: dict, limit: int = 0) -> str:
    """The readable report: the summary and a table of problem videos.

    Args:
        rows (list[dict]): Report rows.
        meta (dict): ``config``, ``splits``, ``seconds``, ``skip_list``.
        limit (int): Problem rows shown (0: all). Defaults to 0.
    """
    counts = Counter(r['status'] for r in rows)
    past = [r for r in rows if r.get('segments_past_end')]
    lines = [f'check_dataset: {meta["config"]} (splits: '
             f'{", ".join(meta["splits"])})',
             f'{len(rows)} video(s) checked in {meta["seconds"]:.1f} s',
             '', f'{"status":<20}{"videos":>8}']
    lines += [f'{s:<20}{counts.get(s, 0):>8}' for s in STATUSES]
    if past:
        n = sum(r['segments_past_end'] for r in past)
        lines.append(f'{n} annotated segment(s) end after their video, in '
                     f'{len(past)} video(s) (clipped in training)')
    problems = [r for r in rows if r['status'] != 'ok' or r['problems']]
    problems.sort(key=lambda r: (STATUSES.index(r['status']),
                                 r['video_id']))
    if problems:
        width = max(len('video_id'), *(len(r['video_id']) for r in problems))
        lines += ['', 'Problem videos (ann: annotation, video: the file):',
                  f'{"video_id":<{width}}  {"status":<17}  {"split":<9}  '
                  f'{"ann dur":>8}  {"video dur":>9}  {"ann fps":>7}  '
                  f'{"fps":>7}  problem']
        shown = problems if not limit else problems[:limit]
        for r in shown:
            lines.append(
                f'{r["video_id"]:<{width}}  {r["status"]:<17}  '
                f'{",".join(r["splits"]):<9}  {_num(r.get("ann_duration")):>8}'
                f'  {_num(r.get("duration")):>9}  '
                f'{_num(r.get("ann_fps"), ".3g"):>7}  '
                f'{_num(r.get("fps"), ".3g"):>7}  '
                f'{"; ".join(p.splitlines()[0] for p in r["problems"])}')
        if len(shown) < len(problems):
            lines.append(f'... and {len(problems) - len(shown)} more (see '
                         'report.txt / report.json)')
    skipped = meta.get('skipped', [])
    lines += ['', f'skip list: {meta["skip_list"]} ({len(skipped)} '
              f'video(s): statuses {", ".join(meta["skip_statuses"])})']
    if skipped:
        lines.append(
            'use it with --cfg-options train_dataloader.dataset.skip_list='
            f'{meta["skip_list"]} (and the val / test dataloaders), or set '
            'skip_list= in the config\'s datasets')
    return '\n'.join(lines)


def write_report(rows: List[dict], out_dir: str, meta: dict,
                 skip_statuses: Sequence[str]) -> Dict[str, str]:
    """Write ``report.json``, ``report.txt`` and ``skip_list.txt``.

    Returns:
        dict: Their paths (``json``, ``txt``, ``skip_list``).
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = dict(json=osp.join(out_dir, 'report.json'),
                 txt=osp.join(out_dir, 'report.txt'),
                 skip_list=osp.join(out_dir, 'skip_list.txt'))
    skipped = [r['video_id'] for r in rows if r['status'] in skip_statuses]
    meta = dict(meta, skip_list=paths['skip_list'],
                skip_statuses=list(skip_statuses), skipped=skipped)
    with open(paths['skip_list'], 'w', encoding='utf-8') as f:
        f.writelines(v + '\n' for v in skipped)
    summary = Counter(r['status'] for r in rows)
    with open(paths['json'], 'w', encoding='utf-8') as f:
        json.dump(dict(meta, summary={s: summary.get(s, 0)
                                      for s in STATUSES},
                       videos=[{k: v for k, v in r.items()
                                if k != 'segments' and not (
                                    k.startswith('feature_') and v is None)}
                               for r in rows]),
                  f, indent=1)
    with open(paths['txt'], 'w', encoding='utf-8') as f:
        f.write(format_report(rows, meta) + '\n')
    return paths


# --------------------------------------------------------------------- CLI


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Check the videos (or features) of a config\'s '
        'datasets: they exist, open, decode at both ends, and agree with '
        'their annotations. Writes report.json, report.txt and '
        'skip_list.txt; exits with 1 if a video is unusable.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='an MMEngine config file')
    parser.add_argument('--split', nargs='+', choices=SPLITS,
                        default=list(SPLITS),
                        help='dataloaders whose datasets are checked (a '
                        'video they share is checked once)')
    parser.add_argument('--workers', type=int,
                        default=min(8, os.cpu_count() or 1),
                        help='processes checking videos (0 or 1: none; '
                        'default: the CPU count, at most 8)')
    parser.add_argument('--out-dir', default=None,
                        help='where the report goes (None: '
                        'work_dirs/<config name>/check_dataset)')
    parser.add_argument('--duration-tol', type=float, default=0.5,
                        help='duration tolerance (s); the larger of it and '
                        '--duration-tol-ratio is used')
    parser.add_argument('--duration-tol-ratio', type=float, default=0.02,
                        help='duration tolerance (fraction of the video)')
    parser.add_argument('--fps-tol-ratio', type=float, default=0.01,
                        help='fps tolerance (fraction of the video\'s fps)')
    parser.add_argument('--skip-mismatched', action='store_true',
                        help='also put duration / fps mismatches in the '
                        'skip list (and count them as unusable)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    parser.add_argument('--show', type=int, default=30,
                        help='problem videos printed (the report has all)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. '
                        'data_root=DIR)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the check; returns the exit status (1: unusable videos)."""
    args = parse_args(argv)
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    apply_runner_data_root(cfg)
    specs = dataset_specs(cfg, args.split)
    if not specs:
        print(f'error: {args.config} has no dataset in the dataloaders of '
              f'{", ".join(args.split)}', file=sys.stderr)
        return 2
    out_dir = args.out_dir or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0],
        'check_dataset')
    for spec in specs:
        print(f'{"/".join(spec["splits"])}: {spec["ann_file"]} (subset '
              f'{spec["subset"]!r}), files {spec["folder"]}/*'
              f'{spec["suffix"]}')
    tasks = video_tasks(specs)
    tol = dict(duration_s=args.duration_tol,
               duration_ratio=args.duration_tol_ratio,
               fps_ratio=args.fps_tol_ratio)
    start = time.perf_counter()
    rows = check_all(tasks, tol, args.workers, not args.no_progress)
    skip_statuses = list(UNUSABLE) + (
        ['duration_mismatch', 'fps_mismatch'] if args.skip_mismatched
        else [])
    meta = dict(config=args.config, splits=args.split,
                seconds=time.perf_counter() - start,
                tolerances=tol, workers=args.workers)
    paths = write_report(rows, out_dir, meta, skip_statuses)
    meta.update(skip_list=paths['skip_list'], skip_statuses=skip_statuses,
                skipped=[r['video_id'] for r in rows
                         if r['status'] in skip_statuses])
    print(format_report(rows, meta, limit=args.show))
    print(f'report: {paths["txt"]} and {paths["json"]}')
    bad = len(meta['skipped'])
    if bad:
        print(f'{bad} of {len(rows)} video(s) cannot be used; skip list: '
              f'{paths["skip_list"]}', file=sys.stderr)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())

"""Manifests of extracted features: where each feature sits in its video.

``tools/extract_features.py`` (through :mod:`re2tal_mm.apis.features`)
writes one entry per video, ``<feature_dir>/<video_id>.json`` beside
``<video_id>.npy``, and a merged ``<feature_dir>/manifest.json``;
:class:`~re2tal_mm.datasets.LoadTALFeature` reads them, so the feature grid
(``fps``, ``feature_stride``, ``center``) is never guessed. Files are written
atomically (a temporary file of the same folder, then ``os.replace``).

This module is the manifest's one home: the format, the entry's fields
(:func:`manifest_entry`), the settings digest that decides whether a video
is done, and the reading and writing; the extractor
(:mod:`re2tal_mm.apis.features`) and the tool import it from here.
"""
import glob
import hashlib
import json
import os
import os.path as osp
from typing import Callable, List, Optional, Tuple

import numpy as np

#: ``format`` of the manifest entries.
MANIFEST_FORMAT = 're2tal-features/1'
#: Name of the merged manifest in a feature folder.
MANIFEST_NAME = 'manifest.json'
#: The grid formula, written into every entry for the reader's benefit.
GRID_FORMULA = 'time of feature i = (i + center) * feature_stride / fps s'
#: What an entry copies from the extractor's ``info``.
EXTRACTOR_KEYS = ('config', 'model', 'backbone', 'checkpoint',
                  'checkpoint_sha256', 'seed', 'rewiring', 'spatial_pool',
                  'frames_as_batch', 'mean', 'std', 'to_rgb')


def settings_digest(settings: dict) -> str:
    """Short sha256 of the settings that determine the features (the key a
    finished video's entry must match to be skipped on a rerun)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def manifest_entry(video_id: str, video_file: str, info: dict, extractor,
                   settings: dict) -> dict:
    """The manifest entry of one video (format :data:`MANIFEST_FORMAT`).

    Args:
        video_id (str): The video's id (its features: ``<video_id>.npy``).
        video_file (str): The video the features were made from.
        info (dict): What the extraction loop returns about the features
            (fps, grid, clip layout...).
        extractor: The feature extractor (a
            :class:`~re2tal_mm.apis.features.BackboneFeatures`): its
            ``info`` gives :data:`EXTRACTOR_KEYS`.
        settings (dict): The settings that determine the features, kept
            as their :func:`settings_digest`.
    """
    entry = dict(format=MANIFEST_FORMAT, video_id=video_id,
                 feature_file=video_id + '.npy', video_file=video_file,
                 dtype='float32', grid=GRID_FORMULA)
    entry.update(info)
    entry.update({k: extractor.info.get(k) for k in EXTRACTOR_KEYS})
    entry['settings_sha256'] = settings_digest(settings)
    return entry


def sidecar_path(feature_dir: str, video_id: str) -> str:
    """``<feature_dir>/<video_id>.json``: a video's manifest entry."""
    return osp.join(feature_dir, video_id + '.json')


def _tmp_name(path: str) -> str:
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.{os.getpid()}.tmp')


def remove_stale_temps(feature_dir: str, video_id: str) -> List[str]:
    """Delete the temporary files an interrupted write of ``video_id``
    left (``.<video_id>.npy.<pid>.tmp`` ...); return their paths."""
    found = glob.glob(osp.join(glob.escape(feature_dir),
                               '.' + glob.escape(video_id) + '.*.tmp'))
    for path in found:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    return found


def replace_from_temp(path: str, write: Callable) -> None:
    """Write ``path`` with ``write(file)`` into a temporary file of the
    same folder, then ``os.replace`` it: readers never see half a file."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def save_npy_atomic(path: str, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` through a temporary file of the same
    folder and ``os.replace``: readers see the old file or the new one."""
    replace_from_temp(path, lambda f: np.save(f, array))


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see
    :func:`save_npy_atomic`)."""
    text = json.dumps(obj, indent=1, sort_keys=True) + '\n'
    replace_from_temp(path, lambda f: f.write(text.encode()))


def read_entry(path: str) -> Optional[dict]:
    """A manifest entry written here (``format`` :data:`MANIFEST_FORMAT`),
    None for a missing file or any other JSON; malformed JSON is an error
    naming the file."""
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        try:
            entry = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'malformed feature manifest {path}: {err}') \
                from err
    if isinstance(entry, dict) and entry.get('format') == MANIFEST_FORMAT:
        return entry
    return None


def finished_entry(feature_dir: str, video_id: str,
                   digest: Optional[str] = None) -> Tuple[str, dict]:
    """Whether ``video_id`` is done in ``feature_dir``.

    Returns:
        tuple[str, dict]: ``('todo', {})`` (no entry or no features),
        ``('done', entry)`` (entry and a ``.npy`` of its shape, made with
        settings ``digest`` when given) or ``('other', entry)`` (done with
        other settings).
    """
    entry = read_entry(sidecar_path(feature_dir, video_id))
    if entry is None:
        return 'todo', {}
    npy = osp.join(feature_dir, entry.get('feature_file', video_id + '.npy'))
    try:
        shape = np.load(npy, mmap_mode='r').shape
    except (OSError, ValueError):
        return 'todo', {}
    if shape != (entry.get('num_features'), entry.get('feature_dim')):
        return 'todo', {}
    if digest is not None and entry.get('settings_sha256') != digest:
        return 'other', entry
    return 'done', entry


def merge_manifest(feature_dir: str, rounds: int = 5) -> str:
    """Write ``<feature_dir>/manifest.json`` from the per-video entries.

    ``{"format": ..., "videos": {video_id: entry}}``, written atomically.
    Several processes may call it as they finish: each re-reads the entries
    after writing and writes again while they changed, so the last writer
    leaves the complete list. The per-video files stay the reference.

    Args:
        feature_dir (str): The feature folder.
        rounds (int): Attempts while the entries keep changing.
            Defaults to 5.

    Returns:
        str: The manifest's path.
    """
    out = osp.join(feature_dir, MANIFEST_NAME)
    previous = None
    for _ in range(rounds):
        videos = {}
        for path in sorted(glob.glob(osp.join(glob.escape(feature_dir),
                                              '*.json'))):
            if osp.basename(path) == MANIFEST_NAME:
                continue
            try:
                entry = read_entry(path)
            except ValueError:
                continue
            if entry is not None and osp.isfile(osp.join(
                    feature_dir, entry.get('feature_file', ''))):
                videos[entry['video_id']] = entry
        if videos == previous:
            break
        write_json_atomic(out, dict(format=MANIFEST_FORMAT, videos=videos))
        previous = videos
    return out

"""Manifests of extracted features: where each feature sits in its video.

``tools/extract_features.py`` (through :mod:`re2tal_mm.apis.features`)
writes one entry per video, ``<feature_dir>/<video_id>.json`` beside
``<video_id>.npy``, and a merged ``<feature_dir>/manifest.json``;
:class:`~re2tal_mm.datasets.LoadTALFeature` reads them, so the feature grid
(``fps``, ``feature_stride``, ``center``) is never guessed. Files are written
atomically (a temporary file of the same folder, then ``os.replace``).
"""
import glob
import json
import os
import os.path as osp
from typing import Callable, List, Optional, Tuple

import numpy as np

#: ``format`` of the manifest entries.
MANIFEST_FORMAT = 're2tal-features/1'
#: Name of the merged manifest in a feature folder.
MANIFEST_NAME = 'manifest.json'


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

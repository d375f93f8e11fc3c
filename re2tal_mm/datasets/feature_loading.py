"""LoadTALFeature: a video's pre-extracted features and their grid."""
import json
import logging
import os
import os.path as osp
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from mmaction.registry import TRANSFORMS
from .feature_manifest import MANIFEST_FORMAT, MANIFEST_NAME, read_entry


@TRANSFORMS.register_module()
class LoadTALFeature(BaseTransform):
    """Load a ``T x C`` ``.npy`` feature sequence and the grid it lies on.

    Feature ``i`` stands for the time ``(i + center) * feature_stride /
    fps`` s (:class:`~re2tal_mm.structures.TemporalGrid`). Features written
    by ``tools/extract_features.py`` come with a manifest that says so:
    ``<folder>/<video_id>.json`` next to ``<folder>/<video_id>.npy``, or
    the video's entry in ``<folder>/manifest.json`` (format
    ``re2tal-features/1``, see :mod:`re2tal_mm.apis.features`). With one,
    ``fps``, ``feature_stride`` and ``center`` come from it (its ``fps`` is
    the rate the features were extracted at, preferred to the
    annotation's), an argument given here overrides it (with a warning when
    they differ), and a feature file of another shape than the manifest
    records is an error naming both files.

    Without a manifest (features from elsewhere): ``fps`` is the
    annotation's, else this argument; ``feature_stride`` and ``center`` are
    the arguments (defaults 1 and 0). No fps at all is an error naming the
    file.

    :meth:`probe` gives the same grid without loading the features (the
    ``.npy`` header only): ``TALDataset`` counts its sliding test windows
    with it.

    Args:
        feature_stride (float, optional): Video frames between two feature
            steps. Defaults to None (the manifest's, else 1).
        fps (float, optional): Video fps. Defaults to None (the
            manifest's, else the annotation's).
        center (float, optional): Position of a step inside its stride
            (grid units: 2 for 16-frame clips every 4 frames). Defaults to
            None (the manifest's, else 0).
        manifest (str | bool): ``'auto'``: look for the manifest next to
            the feature file; a path: that ``manifest.json`` (or the folder
            holding it); False: ignore manifests. Defaults to ``'auto'``.
    """

    FROM_MANIFEST = ('fps', 'feature_stride', 'center')

    def __init__(self, feature_stride: Optional[float] = None,
                 fps: Optional[float] = None,
                 center: Optional[float] = None, manifest='auto') -> None:
        self.feature_stride = feature_stride
        self.fps = fps
        self.center = center
        self.manifest = manifest
        self._merged = {}  # manifest.json path -> (mtime, videos)
        self._warned = set()

    def _merged_entry(self, path: str, video_id: str) -> Optional[dict]:
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return None
        cached = self._merged.get(path)
        if cached is None or cached[0] != mtime:
            with open(path, encoding='utf-8') as f:
                try:
                    data = json.load(f)
                except json.JSONDecodeError as err:
                    raise ValueError(f'malformed feature manifest {path}: '
                                     f'{err}') from err
            videos = data.get('videos', {}) if isinstance(data, dict) and \
                data.get('format') == MANIFEST_FORMAT else {}
            cached = self._merged[path] = (mtime, videos)
        return cached[1].get(video_id)

    def manifest_entry(self, feature_path: str) -> Optional[tuple]:
        """``(entry, manifest file)`` of a feature file, or None."""
        if self.manifest is False or self.manifest is None:
            return None
        folder, name = osp.split(feature_path)
        video_id = osp.splitext(name)[0]
        if self.manifest == 'auto':
            sidecar = osp.join(folder, video_id + '.json')
            entry = read_entry(sidecar)
            if entry is not None:
                return entry, sidecar
            merged = osp.join(folder, MANIFEST_NAME)
        else:
            merged = str(self.manifest)
            if osp.isdir(merged):
                merged = osp.join(merged, MANIFEST_NAME)
            if not osp.isfile(merged):
                raise FileNotFoundError(
                    f'feature manifest not found: {merged}')
        entry = self._merged_entry(merged, video_id)
        return None if entry is None else (entry, merged)

    def _choose(self, key: str, entry: dict, source: str, path: str):
        given = getattr(self, key)
        if given is None:
            return entry[key]
        if abs(float(given) - float(entry[key])) > 1e-6 and \
                (key, source) not in self._warned:
            self._warned.add((key, source))
            print_log(f'LoadTALFeature({key}={given}) overrides the '
                      f'{key}={entry[key]} of the features\' manifest '
                      f'{source} (first seen for {path}): the grid is not '
                      'the one they were extracted on',
                      logger='current', level=logging.WARNING)
        return given

    def _grid(self, path: str, shape: Tuple[int, ...],
              results: dict) -> dict:
        """``fps``, ``total_steps``, ``feature_stride`` and ``grid_center``
        of the features of ``path`` (of ``shape``)."""
        if len(shape) != 2:
            raise ValueError(f'{path}: expected a T x C array, got shape '
                             f'{tuple(shape)}')
        found = self.manifest_entry(path)
        if found is not None:
            entry, source = found
            want = (entry.get('num_features'), entry.get('feature_dim'))
            if tuple(shape) != want:
                raise ValueError(
                    f'{path} holds {shape[0]} x {shape[1]} '
                    f'features but its manifest {source} records '
                    f'{want[0]} x {want[1]}: stale manifest or features '
                    'of another extraction; rerun tools/extract_features.py')
            fps, stride, center = (self._choose(k, entry, source, path)
                                   for k in self.FROM_MANIFEST)
        else:
            fps = results.get('fps') or self.fps
            stride = 1.0 if self.feature_stride is None else \
                self.feature_stride
            center = 0.0 if self.center is None else self.center
        if not fps:
            raise ValueError(
                f'{path}: no fps: no feature manifest next to it '
                '(<video_id>.json or manifest.json, written by '
                'tools/extract_features.py), none in the annotation; set '
                'LoadTALFeature(fps=...)')
        return dict(fps=float(fps), total_steps=int(shape[0]),
                    feature_stride=float(stride), grid_center=float(center))

    @staticmethod
    def _path(results: dict) -> str:
        return results.get('feature_path', results.get('filename'))

    def probe(self, results: dict) -> dict:
        """What :meth:`transform` adds but ``feature``: the grid only, from
        the ``.npy`` header (no feature is read)."""
        path = self._path(results)
        try:
            shape = np.load(path, mmap_mode='r').shape
        except (OSError, ValueError) as err:
            raise IOError(f'cannot load feature file {path}: {err}') from err
        results.update(self._grid(path, shape, results))
        return results

    def transform(self, results: dict) -> dict:
        """Add ``feature`` (T x C float32), ``fps``, ``total_steps``,
        ``feature_stride`` and ``grid_center``."""
        path = self._path(results)
        try:
            feat = np.load(path)
        except (OSError, ValueError) as err:
            raise IOError(f'cannot load feature file {path}: {err}') from err
        results.update(self._grid(path, feat.shape, results))
        results['feature'] = feat.astype(np.float32)
        return results

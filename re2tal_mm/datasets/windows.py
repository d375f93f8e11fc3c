"""Sliding test windows on each video's own grid.

A test window is the window of the test pipeline's
:class:`~re2tal_mm.datasets.TALWindowSample`: ``num_steps`` steps of its
grid (sampled frames, every ``frame_stride`` frames or at ``target_fps``;
or feature steps). A video of ``T`` steps gets windows starting at
``i * int(num_steps * (1 - overlap))`` steps, the last one ending at its
last step (OpenTAD's placement), counted in steps of that video, whatever
its fps. :class:`~re2tal_mm.datasets.TALDataset` (``sliding_window=True``)
and :func:`~re2tal_mm.apis.localize_video` both call :func:`video_windows`.
"""
import logging
from typing import List, Optional, Sequence, Tuple

from mmengine.logging import print_log

#: ``window_count`` values: ours (the default) and OpenTAD's.
WINDOW_COUNTS = ('cover', 'opentad')

#: Errors of reading a video's (or feature file's) header that leave its
#: windows to be estimated from the annotation.
PROBE_ERRORS = (OSError, ValueError)


def window_starts(total_steps: int, num_steps: int, overlap: float = 0.25,
                  count: str = 'cover') -> List[int]:
    """Start steps of the test windows of a video of ``total_steps`` steps.

    Window ``i`` starts at ``i * stride`` with ``stride = int(num_steps *
    (1 - overlap))`` (at least 1), the last at ``total_steps - num_steps``
    (0 when the video fits in one window).

    Args:
        total_steps (int): Steps of the video (sampled frames or features).
        num_steps (int): Steps per window.
        overlap (float): Overlap ratio of two adjacent windows, in
            ``[0, 1)``. Defaults to 0.25.
        count (str): ``'cover'``: windows while ``i * stride + num_steps <
            total_steps``, then the last one: the whole video is covered and
            no window repeats. ``'opentad'``: OpenTAD's loop
            (``SlidingWindowDataset.split_video_to_windows``): ``max(1,
            total_steps // stride)`` windows, stopping at the first that
            passes the end (moved back to end there); with ``overlap <
            0.5`` the video's tail can be left without a window, with
            ``overlap >= 0.5`` a last window can repeat the one before.
            Defaults to ``'cover'``.

    Returns:
        list[int]: The start step of each window, in order.
    """
    if num_steps <= 0 or total_steps <= 0:
        raise ValueError(f'num_steps and total_steps must be > 0, got '
                         f'{num_steps} and {total_steps}')
    if not 0 <= overlap < 1:
        raise ValueError(f'window_overlap must be in [0, 1), got {overlap}')
    if count not in WINDOW_COUNTS:
        raise ValueError(f'window_count must be one of {WINDOW_COUNTS}, got '
                         f'{count!r}')
    stride = max(1, int(num_steps * (1 - overlap)))
    last = max(0, total_steps - num_steps)
    if count == 'cover':
        return list(range(0, last, stride)) + [last]
    starts = []
    for i in range(max(1, total_steps // stride)):
        if i * stride + num_steps > total_steps:
            return starts + [last]
        starts.append(i * stride)
    return starts


def sliding_windows(total_steps: int, num_steps: int,
                    overlap: float = 0.25,
                    count: str = 'cover') -> List[dict]:
    """The test windows of a video, as sample fields.

    Each window has ``window_index``, ``window_count``, ``window_start``
    (step, :func:`window_starts`), ``window_total_steps`` and
    ``window_overlap``; :class:`TALWindowSample` takes its frames (or
    features) from there.

    Args:
        total_steps (int): Steps of the video.
        num_steps (int): Steps per window (the ``TALWindowSample``'s).
        overlap (float): Overlap ratio. Defaults to 0.25.
        count (str): See :func:`window_starts`. Defaults to ``'cover'``.

    Returns:
        list[dict]: One dict per window.
    """
    starts = window_starts(total_steps, num_steps, overlap, count)
    return [dict(window_index=i, window_count=len(starts),
                 window_start=int(s), window_total_steps=int(total_steps),
                 window_overlap=float(overlap))
            for i, s in enumerate(starts)]


def window_sampler(transforms: Sequence) -> Tuple[int, object]:
    """``(position, transform)`` of the ``TALWindowSample`` of a pipeline
    (built transforms); an error if it has none in ``'window'`` mode."""
    for i, t in enumerate(transforms):
        if type(t).__name__ == 'TALWindowSample':
            if t.mode != 'window':
                raise ValueError(
                    f'sliding test windows need TALWindowSample(mode='
                    f'\'window\'), the test pipeline has mode={t.mode!r}; '
                    'set sliding_window=False (and no window_duration) '
                    'on the dataset')
            return i, t
    raise ValueError('sliding test windows need a TALWindowSample in the '
                     'test pipeline (its num_steps is the window length); '
                     'none found')


def check_windows(transforms: Sequence,
                  window_duration: Optional[float] = None) -> None:
    """Check that the test pipeline has a window (:func:`window_sampler`);
    warn that ``window_duration`` (set) is deprecated and unused."""
    _, sampler = window_sampler(transforms)
    if not window_duration:
        return
    grid = f'target_fps={sampler.target_fps}' if sampler.target_fps else \
        f'frame_stride={sampler.frame_stride}'
    print_log(
        f'TALDataset(window_duration={window_duration}) is deprecated and '
        'its value is not used: test windows are the test pipeline\'s '
        f'TALWindowSample windows (num_steps={sampler.num_steps}; videos: '
        f'{grid}; features: their steps), counted on each video\'s own '
        'grid; set sliding_window=True (and window_overlap) instead',
        logger='current', level=logging.WARNING)


def probe_grid(results: dict, transforms: Sequence
               ) -> Tuple[float, float, int]:
    """``(fps, stride, total_steps)`` of a video as its ``TALWindowSample``
    will see it: the transforms before it run on ``results`` (their
    ``probe`` method where they have one: metadata only, e.g.
    ``LoadTALFeature``'s; ``TALVideoInit`` reads the header only)."""
    at, sampler = window_sampler(transforms)
    res = dict(results)
    try:
        for t in transforms[:at]:
            res = getattr(t, 'probe', t)(res)
        return sampler.grid_of(res)
    finally:
        reader = res.get('video_reader')
        if hasattr(reader, 'close'):
            reader.close()


def _estimated_grid(results: dict, sampler, err: Exception):
    """The grid from the annotation (``duration`` x ``fps``) when the
    header cannot be read; None if it cannot be estimated."""
    name = f'video {results.get("video_id")} ({results.get("filename")})'
    fps, duration = results.get('fps'), results.get('duration')
    if 'feature_path' in results or not fps or not duration:
        why = 'a feature file' if 'feature_path' in results else \
            'its fps is unknown (no "fps" in its annotation)'
        print_log(f'{name}: cannot read its header ({err}) and {why}: one '
                  'test window at its start (its loading will fail again '
                  'and say why)', logger='current', level=logging.WARNING)
        return None
    frames = int(round(duration * fps))
    print_log(f'{name}: cannot read its header ({err}); its test windows '
              f'are counted from its annotation ({duration} s x {fps} fps = '
              f'{frames} frames)', logger='current', level=logging.WARNING)
    return sampler.grid_of(dict(results, total_frames=frames, avg_fps=fps))


def video_windows(results: dict, transforms: Sequence,
                  overlap: float = 0.25, count: str = 'cover') -> List[dict]:
    """The sliding test windows of one video, on its own grid.

    The number of steps comes from :func:`probe_grid` (the frame count and
    fps of the video's header; the number of features of a feature file),
    the window length from the pipeline's ``TALWindowSample``
    (``num_steps``). A video whose header cannot be read is counted from
    its annotation's ``duration`` and ``fps``; without an fps it gets one
    window; either way with a warning naming it.

    Args:
        results (dict): The video's entry (``filename`` or
            ``feature_path``, ``duration``, ``fps`` if the annotation has
            one; or already its metadata, as ``localize_video`` gives).
        transforms (Sequence): The test pipeline's built transforms.
        overlap (float): Overlap ratio. Defaults to 0.25.
        count (str): See :func:`window_starts`. Defaults to ``'cover'``.

    Returns:
        list[dict]: :func:`sliding_windows` of the video, each with its
        ``window_offset`` (s) too.
    """
    _, sampler = window_sampler(transforms)
    try:
        grid = probe_grid(results, transforms)
    except PROBE_ERRORS as err:
        grid = _estimated_grid(results, sampler, err)
    if grid is None:
        return [dict(window_index=0, window_count=1,
                     window_overlap=float(overlap))]
    fps, stride, total = grid
    wins = sliding_windows(total, sampler.num_steps, overlap, count)
    for win in wins:
        win['window_offset'] = win['window_start'] * stride / fps
    return wins

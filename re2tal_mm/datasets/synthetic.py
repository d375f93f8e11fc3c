"""A small synthetic temporal action localization dataset.

Each class is one coloured disc with its own colour and its own *motion*
(horizontal sweep, vertical sweep, circle, pulsing, ...) that appears only
inside the class's annotated segments. Outside them, and during them, a
drifting background and randomly walking grey distractor squares change every
frame, and sensor noise is added, so a model must look at colour, shape and
motion rather than at any change of the frame.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np
from mmengine.utils import ProgressBar

SIZES = (64, 80, 96, 112)
# saturated RGB colours of the classes' discs; distractors are grey
PALETTE = ((230, 40, 40), (40, 200, 40), (50, 80, 240), (240, 220, 30),
           (220, 40, 220), (30, 210, 220), (250, 140, 20), (255, 255, 255))
MOTIONS = ('horizontal', 'vertical', 'circle', 'pulse', 'diagonal',
           'zigzag', 'figure8', 'jump')


def _motion(k, t, size):
    """Centre (x, y) and radius of class ``k``'s disc at ``t`` s."""
    name, speed = MOTIONS[k % len(MOTIONS)], 1.0 + 0.5 * (k // len(MOTIONS))
    c, a, r = size / 2, size * 0.3, size * 0.12
    w = 2 * np.pi * 0.5 * speed * t
    if name == 'horizontal':
        return c + a * np.sin(w), c, r
    if name == 'vertical':
        return c, c + a * np.sin(w), r
    if name == 'circle':
        return c + a * np.cos(w), c + a * np.sin(w), r
    if name == 'pulse':
        return c, c, r * (1.5 + 1.2 * np.sin(2 * w))
    if name == 'diagonal':
        return c + a * np.sin(w), c + a * np.sin(w), r
    if name == 'zigzag':
        tri = 2 * abs((t * speed) % 1.0 - 0.5) * 2 - 1
        return c + a * tri, c + 0.5 * a * np.sign(np.sin(4 * w)), r
    if name == 'figure8':
        return c + a * np.sin(w), c + 0.6 * a * np.sin(2 * w), r
    return c, c + a * (1 - 2 * abs(np.sin(w))), r  # jump


def _segments(rng, duration, labels):
    """1 to 3 non-overlapping actions of 3-12 s each, labels from ``labels``
    (an iterator, so classes stay balanced over the dataset)."""
    anns, t = [], rng.uniform(1, 6)
    for _ in range(rng.integers(1, 4)):
        length = rng.uniform(3, 12)
        if t + length > duration - 1:
            break
        anns.append(dict(segment=[round(t, 2), round(t + length, 2)],
                         label=f'class_{next(labels)}'))
        t += length + rng.uniform(2, 10)
    return anns


def _balanced_labels(rng, num_classes):
    """Endless class indices: shuffled rounds of every class."""
    while True:
        yield from (int(k) for k in rng.permutation(num_classes))


def write_h264(path: str, frames, fps, *, fmt=None, options=None,
               container_options=None, time_base=None) -> str:
    """Encode RGB frames with PyAV's ``libx264`` (``yuv420p``, one thread).

    The writer of the tests and benchmarks that need real H.264 files.

    Args:
        path (str): Output file (the container from its extension or
            ``fmt``).
        frames (Iterable): ``H x W x 3`` uint8 RGB arrays, or ``(array,
            pts)`` pairs with ``time_base`` (variable frame rate).
        fps (int | Fraction): Nominal frame rate.
        fmt (str, optional): Container format. Defaults to None.
        options (dict, optional): Encoder options (``{'g': '12'}``).
            Defaults to None.
        container_options (dict, optional): Muxer options
            (``{'movflags': '+faststart'}``). Defaults to None.
        time_base (Fraction, optional): Time base of given pts. Defaults to
            None.

    Returns:
        str: ``path``.
    """
    import av
    container = av.open(str(path), 'w', format=fmt,
                        options=container_options or {})
    stream = None
    for item in frames:
        img, pts = item if isinstance(item, tuple) else (item, None)
        if stream is None:
            stream = container.add_stream('libx264', rate=fps)
            stream.height, stream.width = img.shape[:2]
            stream.pix_fmt = 'yuv420p'
            stream.codec_context.thread_count = 1
            if time_base is not None:
                stream.codec_context.time_base = time_base
            if options:
                stream.options = dict(options)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img),
                                           format='rgb24')
        if pts is not None:
            frame.pts, frame.time_base = pts, time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    if stream is not None:
        for packet in stream.encode():
            container.mux(packet)
    container.close()
    return str(path)


def render_video(path, duration, size, fps, anns, rng):
    """Write one mp4; return the number of frames written."""
    n = int(round(duration * fps))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (size, size))
    if not writer.isOpened():
        raise IOError(f'cannot write {path}')
    base = rng.uniform(60, 160) + rng.uniform(-20, 20, 3)  # greyish tint
    phase = rng.uniform(0, 2 * np.pi, 3)
    blobs = rng.uniform(0, size, (3, 2))
    grays = rng.uniform(70, 190, 3)
    half = max(1, int(size * 0.06))
    spans = [(a['segment'][0], a['segment'][1],
              int(a['label'].split('_')[1])) for a in anns]
    for i in range(n):
        t = i / fps
        col = base + 15 * np.sin(0.2 * t + phase)
        grad = (xx + yy + 3 * t) / (2 * size)
        frame = (col[None, None, :] * (0.7 + 0.3 * grad[..., None]))
        blobs = (blobs + rng.normal(0, size * 0.03, blobs.shape)) % size
        for (bx, by), gray in zip(blobs, grays):
            frame[int(by) - half:int(by) + half,
                  int(bx) - half:int(bx) + half] = gray
        for start, end, k in spans:
            if start <= t < end:
                cx, cy, r = _motion(k, t - start, size)
                frame[(xx - cx)**2 + (yy - cy)**2 < r**2] = \
                    PALETTE[k % len(PALETTE)]
        frame += rng.normal(0, 4, frame.shape)
        writer.write(np.clip(frame, 0, 255).astype(np.uint8)[..., ::-1])
    writer.release()
    return n


VERSION = 'synthetic-v2'  # bump when the rendering changes


def make_synthetic_dataset(out_dir, num_videos=96, num_classes=4, seed=0,
                           fps=10, min_duration=20, max_duration=40,
                           val_ratio=0.25, progress=False):
    """Write ``out_dir/videos/*.mp4`` and ``out_dir/annotations.json``.

    Args:
        out_dir (str): Output folder.
        num_videos (int): Number of videos.
        num_classes (int): Number of action classes (motion patterns).
        seed (int): Random seed (same seed, same files).
        fps (int): Frame rate.
        min_duration (float): Shortest video (s).
        max_duration (float): Longest video (s).
        val_ratio (float): Fraction of videos in the ``validation`` subset
            (the rest is ``training``).
        progress (bool): Show a progress bar.

    Returns:
        str: Path of the annotation JSON.
    """
    rng = np.random.default_rng(seed)
    video_dir = osp.join(out_dir, 'videos')
    os.makedirs(video_dir, exist_ok=True)
    num_val = max(1, int(round(num_videos * val_ratio))) \
        if num_videos > 1 else 0
    database = {}
    labels = _balanced_labels(rng, num_classes)
    bar = ProgressBar(num_videos) if progress else None
    for v in range(num_videos):
        vid = f'syn_{v:04d}'
        duration = float(rng.integers(min_duration, max_duration + 1))
        size = int(rng.choice(SIZES))
        anns = _segments(rng, duration, labels)
        n = render_video(osp.join(video_dir, vid + '.mp4'), duration, size,
                         fps, anns, rng)
        database[vid] = dict(
            subset='validation' if v >= num_videos - num_val else 'training',
            duration=n / fps, fps=float(fps), annotations=anns,
            resolution=[size, size])
        if bar is not None:
            bar.update()
    path = osp.join(out_dir, 'annotations.json')
    with open(path, 'w') as f:
        json.dump(dict(version=VERSION, classes=[
            f'class_{k}' for k in range(num_classes)], database=database), f,
            indent=1)
    return path

"""A lazy PyAV video reader: metadata at open, frames decoded on request.

The PyAV fallback of :class:`~re2tal_mm.datasets.TALVideoInit`: it never
decodes a whole video into memory; :meth:`PyAVVideoReader.get_batch` seeks to
the keyframe before the first requested frame and decodes forward.
"""
import logging
from fractions import Fraction
from typing import Callable, List, Optional, Sequence

import numpy as np
from mmengine.logging import print_log

#: Frames that the decoded end of a stream may fall short of the count
#: derived from its container's duration (the last frame's duration is often
#: rounded): the reader shows the last decoded frame for them, and
#: ``tools/data/check_dataset.py`` accepts such a video.
END_SLACK_FRAMES = 2


class PyAVVideoReader:
    """A lazy PyAV video reader: metadata at open, frames on request.

    Opening reads the container's header only. The frame count is the
    stream's ``frames`` field, else its duration times its average frame
    rate; a container that reports neither is counted by demuxing its packets
    (no decoding), with a warning naming the file. :meth:`get_batch` seeks to
    the keyframe before the first requested frame and decodes forward to the
    last one, converting only the requested frames to RGB, so a call holds
    the frames it returns and nothing more.

    Frame ``i`` is the frame shown at ``i / fps`` s after the stream's start:
    its presentation timestamp times the average frame rate, rounded (for a
    constant frame rate, the ``i``-th frame as decord counts them). A frame
    without a timestamp follows the previous one.

    Args:
        filename (str): Video file.
        num_threads (int): Decoding threads (0: FFmpeg's choice).
            Defaults to 1.
    """

    def __init__(self, filename: str, num_threads: int = 1) -> None:
        self.filename = filename
        self.num_threads = num_threads
        self.frames_decoded = 0  # all frames decoded so far, kept or not
        self._container = None
        stream = self._stream()
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            self.close()
            raise ValueError('the container reports no frame rate')
        self.rate = Fraction(rate)
        self.time_base = Fraction(stream.time_base)
        self.start_pts = stream.start_time or 0
        self.total_frames = self._frame_count(stream)

    def __len__(self) -> int:
        return self.total_frames

    def get_avg_fps(self) -> float:
        """The stream's average frame rate (frames per second)."""
        return float(self.rate)

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_container'] = None  # reopened on demand
        return state

    def __del__(self):
        self.close()

    def close(self) -> None:
        """Close the container (a later call reopens it)."""
        container, self._container = getattr(self, '_container', None), None
        if container is not None:
            container.close()

    def _stream(self):
        if self._container is None:
            import av
            self._container = av.open(self.filename)
            if not self._container.streams.video:
                self.close()
                raise ValueError('no video stream')
            stream = self._container.streams.video[0]
            stream.codec_context.thread_count = self.num_threads
        return self._container.streams.video[0]

    def _duration(self, stream) -> Optional[float]:
        if stream.duration:
            return float(stream.duration * stream.time_base)
        if self._container.duration:
            return self._container.duration / 1e6  # in av.time_base
        return None

    def _frame_count(self, stream) -> int:
        if stream.frames > 0:
            return int(stream.frames)
        duration = self._duration(stream)
        if duration:
            return int(round(duration * self.rate))
        print_log(f'{self.filename}: the container reports neither a '
                  'duration nor a frame count; counting its frames '
                  '(demuxing the whole file, no decoding)',
                  logger='current', level=logging.WARNING)
        count = sum(1 for p in self._container.demux(stream) if p.size)
        self.close()  # reopened at the start for decoding
        return count

    def get_batch(self, frame_inds: Sequence[int]) -> List[np.ndarray]:
        """Decode frames ``frame_inds`` (any order, repeats allowed).

        Args:
            frame_inds (Sequence[int]): Frame indices.

        Returns:
            list[np.ndarray]: ``H x W x 3`` uint8 RGB frames, in the order of
            ``frame_inds`` (a repeated index gets its own copy).
        """
        inds = [int(i) for i in np.asarray(frame_inds).reshape(-1)]
        if not inds:
            return []
        if min(inds) < 0 or max(inds) >= self.total_frames:
            raise IndexError(f'{self.filename}: frame indices must be in '
                             f'[0, {self.total_frames}), got '
                             f'{min(inds)}..{max(inds)}')
        found, out, seen = self._decode(sorted(set(inds))), [], set()
        for i in inds:
            out.append(found[i].copy() if i in seen else found[i])
            seen.add(i)
        return out

    def _decode(self, wanted: List[int]) -> dict:
        """``{index: RGB frame}`` of the sorted unique indices ``wanted``."""
        margin = Fraction(0)  # s before the first wanted frame
        while True:
            start = (wanted[0] - Fraction(1, 2)) / self.rate - margin
            found = self._scan(wanted, start if start > 0 else None)
            if found is not None:
                return found
            margin = max(Fraction(1), 4 * margin)  # the seek went too far

    def _seek(self, start: Optional[Fraction]):
        """Seek to the keyframe at or before ``start`` s (None: reopen)."""
        if start is None:
            self.close()
            return self._stream()
        stream = self._stream()
        self._container.seek(self.start_pts + int(start / self.time_base),
                             stream=stream, backward=True)
        return stream

    def _index(self, frame, prev: Optional[int]) -> Optional[int]:
        if frame.pts is None:
            return None if prev is None else prev + 1
        return int(round((frame.pts - self.start_pts) * self.time_base *
                         self.rate))

    def _scan(self, wanted: List[int],
              start: Optional[Fraction]) -> Optional[dict]:
        """Decode ``wanted`` from a seek to ``start`` s (None: the start).

        None if the seek landed after ``wanted[0]``.
        """
        import av
        stream = self._seek(start)
        found, pos, prev, shown = {}, 0, -1 if start is None else None, None
        try:
            for frame in self._container.decode(stream):
                self.frames_decoded += 1
                idx = self._index(frame, prev)
                if shown is None and (idx is None or idx > wanted[0]):
                    if start is not None:
                        return None  # landed too late (or no timestamps)
                    shown = frame
                # a wanted index that no frame has is shown by the last one
                while pos < len(wanted) and wanted[pos] < idx:
                    found[wanted[pos]] = shown.to_ndarray(format='rgb24')
                    pos += 1
                if pos < len(wanted) and wanted[pos] == idx:
                    found[idx] = frame.to_ndarray(format='rgb24')
                    pos += 1
                prev, shown = idx, frame
                if pos == len(wanted):
                    return found
        except av.FFmpegError as err:
            where = 'the seek point' if prev is None or prev < 0 else \
                f'frame {prev}'
            raise IOError(
                f'cannot decode frame {wanted[pos]} of {self.filename}: '
                f'decoding failed after {where} (truncated or corrupt '
                f'file?): {err}') from err
        if shown is None:  # nothing after the seek: seek earlier
            if start is not None:
                return None
            raise IOError(f'{self.filename}: no frame could be decoded')
        if self.total_frames - 1 - prev <= END_SLACK_FRAMES:
            for i in wanted[pos:]:  # a duration rounded up at the end
                found[i] = shown.to_ndarray(format='rgb24')
            return found
        raise IOError(f'{self.filename} ends at frame {prev} but its '
                      f'container reports {self.total_frames} frames; '
                      f'frame {wanted[pos]} requested (truncated or corrupt '
                      'file?)')


def open_video(path: str, opener: Optional[Callable] = None,
               backends: Optional[Sequence[str]] = None,
               num_threads: int = 1) -> dict:
    """Open ``path`` for its metadata (no frame is decoded).

    The one probe of a video's header that inference, feature extraction
    and the dataset checker share.

    Args:
        path (str): Video file.
        opener (Callable, optional): The transforms that open it (e.g. the
            head of a test pipeline, up to its ``TALVideoInit``). Defaults
            to None (a ``TALVideoInit`` of ``backends``).
        backends (Sequence[str], optional): Backends of that
            ``TALVideoInit``. Defaults to None (its default).
        num_threads (int): Decoding threads of that ``TALVideoInit``.
            Defaults to 1.

    Returns:
        dict: The results of the opener: ``video_reader``,
        ``total_frames``, ``avg_fps``, ``decode_backend`` ...; an
        ``IOError`` naming ``path`` if it has no frames or no frame rate.
    """
    if opener is None:
        from .transforms import TALVideoInit
        opener = TALVideoInit(num_threads=num_threads, **(
            {} if backends is None else dict(backends=backends)))
    res = opener(dict(filename=path))
    if not res.get('avg_fps') or res.get('total_frames', 0) <= 0:
        raise IOError(f'cannot decode video {path} (no frames or no fps)')
    return res


def decode_ends(reader) -> dict:
    """Decode the first and the last frame of an opened video.

    Args:
        reader: A :class:`PyAVVideoReader` or a decord ``VideoReader``.

    Returns:
        dict: ``frames``, ``fps``, ``duration`` (s, ``frames / fps``),
        ``width``, ``height``, ``last_frame`` (the last frame index) and
        ``decoded_end`` (s). The reader's errors (a stream ending more than
        :data:`END_SLACK_FRAMES` frames before its container's count) pass
        through.
    """
    frames, fps = len(reader), float(reader.get_avg_fps())
    if frames <= 0:
        raise ValueError('no frames')
    for index in (0, frames - 1):  # apart: PyAV seeks to the last one
        last = reader.get_batch([index])
        last = last[0] if isinstance(last, list) else last.asnumpy()[0]
    return dict(fps=fps, duration=frames / fps, frames=frames,
                width=int(last.shape[1]), height=int(last.shape[0]),
                last_frame=frames - 1, decoded_end=frames / fps)

"""TALVideoInit / TALVideoDecode on real H.264 files: decord vs lazy PyAV.

The videos are written with PyAV (libx264) and stamp each frame's index in
a grid of black and white blocks, so a decoded frame tells which one it is.
"""
import logging
import pickle
from fractions import Fraction

import numpy as np
import pytest

from re2tal_mm.datasets.synthetic import write_h264
from re2tal_mm.datasets.transforms import PyAVVideoReader

from mmaction.registry import TRANSFORMS
from .conftest import run_python

BITS = (2, 6)  # rows x columns of the index stamp (frames < 4096)


def stamped_frame(i, width, height):
    """RGB frame ``i``: the index in the top half, a moving ramp below."""
    img = np.zeros((height, width, 3), np.uint8)
    rows, cols = BITS
    bh, bw = height // (2 * rows), width // cols
    for b in range(rows * cols):
        if (i >> b) & 1:
            r, c = divmod(b, cols)
            img[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255
    ramp = (np.arange(width)[None, :] * 3 + np.arange(height // 2)[:, None]
            + 7 * i) % 256
    img[height // 2:, :, 0] = ramp[:height - height // 2]
    img[height // 2:, :, 1] = 255 - img[height // 2:, :, 0]
    img[height // 2:, :, 2] = (37 * i) % 256
    return img


def read_stamp(img):
    """The frame index stamped by :func:`stamped_frame`."""
    height, width = img.shape[:2]
    rows, cols = BITS
    bh, bw = height // (2 * rows), width // cols
    value = 0
    for b in range(rows * cols):
        r, c = divmod(b, cols)
        block = img[r * bh + 1:(r + 1) * bh - 1, c * bw + 1:(c + 1) * bw - 1]
        value |= int(block.mean() > 128) << b
    return value


def write_video(path, num_frames, width, height, fps, fmt=None,
                container_options=None, gop=None):
    """Write ``num_frames`` stamped frames with libx264; return ``path``."""
    return write_h264(path, (stamped_frame(i, width, height)
                             for i in range(num_frames)), fps, fmt=fmt,
                      container_options=container_options,
                      options={'g': str(gop)} if gop else None)


# name: (frames, width, height, fps, format, container options, GOP)
VIDEOS = {
    'small_25fps.mp4': (75, 96, 64, 25, None, None, 12),
    'ntsc_bframes.mp4': (121, 160, 120, Fraction(30000, 1001), None, None,
                         None),
    'long_gop_10fps.mkv': (130, 64, 48, 10, None, None, 50),
    'faststart_60fps.mp4': (150, 128, 72, 60, None,
                            {'movflags': '+faststart'}, 30),
}


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('videos')
    out = {name: write_video(root / name, *spec[:4], fmt=spec[4],
                             container_options=spec[5], gop=spec[6])
           for name, spec in VIDEOS.items()}
    # no duration, no frame count in the container: decord refuses it
    out['live.mkv'] = write_video(root / 'live.mkv', 40, 64, 48, 20,
                                  fmt='matroska',
                                  container_options={'live': '1'})
    # MPEG-TS: timestamps start at 1.4 s, not 0
    out['offset.ts'] = write_video(root / 'offset.ts', 50, 64, 48, 25,
                                   fmt='mpegts')
    for name, cut in (('faststart_60fps.mp4', 0.5),  # index kept
                      ('small_25fps.mp4', 0.5)):     # index (moov) lost
        data = open(out[name], 'rb').read()
        out['truncated_' + name] = str(root / ('truncated_' + name))
        with open(out['truncated_' + name], 'wb') as f:
            f.write(data[:int(len(data) * cut)])
    return out


def open_video(path, backend):
    init = TRANSFORMS.build(dict(type='TALVideoInit', backends=(backend, )))
    return init(dict(filename=path))


def decode(opened, inds, **kwargs):
    res = TRANSFORMS.build(dict(type='TALVideoDecode', **kwargs))(
        dict(opened, frame_inds=np.asarray(inds, np.int64)))
    return res['imgs']


@pytest.mark.parametrize('name', sorted(VIDEOS))
def test_metadata_agrees_with_decord_and_the_file(videos, name):
    frames, _, _, fps = VIDEOS[name][:4]
    opened = {b: open_video(videos[name], b) for b in ('decord', 'pyav')}
    for backend, res in opened.items():
        assert res['decode_backend'] == backend
        assert res['total_frames'] == frames, backend
        assert res['avg_fps'] == pytest.approx(float(fps), rel=1e-6)
    # the PyAV reader read the header only
    assert opened['pyav']['video_reader'].frames_decoded == 0


@pytest.mark.parametrize('name', sorted(VIDEOS))
def test_frames_agree_with_decord(videos, name):
    n = VIDEOS[name][0]
    rng = np.random.default_rng(0)
    index_sets = [[0, 1, 2], [n - 1], [n // 2, n // 2 + 3, n // 2 + 4],
                  sorted(rng.choice(n, 8, replace=False)),
                  list(range(5, n, 6)), [n - 2, 3, n - 2, n - 1, n - 1]]
    decord_res, pyav_res = open_video(videos[name], 'decord'), \
        open_video(videos[name], 'pyav')
    for inds in index_sets:
        a, b = decode(decord_res, inds, frames_per_call=3), \
            decode(pyav_res, inds)
        whole = decode(decord_res, inds, frames_per_call=0)  # one decord call
        assert np.array_equal(np.stack(a), np.stack(whole))
        assert [read_stamp(x) for x in a] == list(inds)
        assert [read_stamp(x) for x in b] == list(inds)
        assert len({id(x) for x in b}) == len(b)  # repeats are copies
        diff = np.abs(np.stack(a).astype(int) - np.stack(b))
        assert diff.max() <= 2 and diff.mean() < 0.1, (inds, diff.max())


def test_pyav_seeks_instead_of_decoding_from_the_start(videos):
    res = open_video(videos['small_25fps.mp4'], 'pyav')
    reader = res['video_reader']
    imgs = decode(res, [60, 62, 64])
    assert [read_stamp(x) for x in imgs] == [60, 62, 64]
    # from the keyframe before frame 60 (GOP of 12 frames) to frame 64
    assert reader.frames_decoded <= 12 + 5


def test_pyav_reader_pickles_without_its_container(videos):
    reader = open_video(videos['small_25fps.mp4'], 'pyav')['video_reader']
    reader.get_batch([3])
    again = pickle.loads(pickle.dumps(reader))
    assert again.total_frames == 75 and again._container is None
    assert [read_stamp(x) for x in again.get_batch([40, 7])] == [40, 7]


def test_stream_starting_late(videos):
    res = open_video(videos['offset.ts'], 'pyav')
    reader = res['video_reader']
    assert reader.start_pts > 0
    assert res['total_frames'] == 50 and res['avg_fps'] == 25
    assert [read_stamp(x) for x in decode(res, [0, 24, 49])] == [0, 24, 49]


class ListHandler(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_no_duration_counts_frames_with_a_warning(videos):
    from mmengine.logging import MMLogger
    path = videos['live.mkv']
    handler = ListHandler()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        res = TRANSFORMS.build(dict(type='TALVideoInit'))(
            dict(filename=path))  # decord fails on it, PyAV takes over
    finally:
        logger.removeHandler(handler)
    assert res['decode_backend'] == 'pyav'
    assert res['total_frames'] == 40 and res['avg_fps'] == 20
    assert any(path in m and 'counting' in m for m in handler.messages)
    assert res['video_reader'].frames_decoded == 0  # demuxed, not decoded
    assert [read_stamp(x) for x in decode(res, [0, 20, 39])] == [0, 20, 39]


TRUNCATED = '''
import sys
import numpy as np
from mmaction.registry import TRANSFORMS
import re2tal_mm  # noqa
paths = sys.argv[1:]
decode = TRANSFORMS.build(dict(type='TALVideoDecode'))
for backend, path in ((b, p) for b in ('decord', 'pyav') for p in paths):
    print('FILE', backend, path)
    try:
        res = TRANSFORMS.build(dict(type='TALVideoInit',
                                    backends=(backend,)))(dict(filename=path))
    except IOError as err:
        print('OPEN-ERROR', err)
        continue
    n = res['total_frames']
    print('FRAMES', n)
    print('EARLY-OK', len(decode(dict(res, frame_inds=np.arange(10)))['imgs']))
    try:
        decode(dict(res, frame_inds=np.arange(n - 10, n)))
        print('LATE-OK')
    except IOError as err:
        print('LATE-ERROR', err)
'''


def test_truncated_files_fail_clearly_naming_the_file(videos):
    names = ('truncated_faststart_60fps.mp4', 'truncated_small_25fps.mp4')
    paths = [videos[name] for name in names]
    res = run_python('import sys; sys.argv = %r\n' % (['x'] + paths, ) +
                     TRUNCATED, env=dict(OMP_NUM_THREADS='1'),
                     timeout=120)  # a hang fails the test
    assert res.returncode == 0, res.stderr[-3000:]
    blocks = res.stdout.split('FILE ')[1:]
    assert len(blocks) == 4, res.stdout
    for (backend, name, path), out in zip(
            [(b, n, p) for b in ('decord', 'pyav')
             for n, p in zip(names, paths)], blocks):
        assert out.startswith(f'{backend} {path}'), out
        assert out.count(path) >= 2, out  # the error names the file
        if name == 'truncated_small_25fps.mp4':  # no index: cannot open
            assert 'OPEN-ERROR' in out, out
        elif backend == 'pyav':
            # the index survives: the container still reports 150 frames;
            # the first ones decode, the missing ones are an error
            assert 'FRAMES 150' in out and 'EARLY-OK 10' in out, out
            assert 'LATE-ERROR' in out and 'truncated' in out, out
        else:  # decord refuses it at open or fails on the missing frames
            assert 'OPEN-ERROR' in out or 'LATE-ERROR' in out, out


def test_variable_frame_rate_is_indexed_by_time(tmp_path):
    """Frame ``i`` is the one shown at ``i / fps`` s (decord counts frames).

    Frames 0-9 at 0.0-0.9 s, none for 0.3 s, frames 10-19 at 1.2-2.1 s.
    """
    path = str(tmp_path / 'vfr.mkv')
    times = [100 * k for k in range(10)] + [1200 + 100 * k for k in range(10)]
    write_h264(path, ((stamped_frame(i, 64, 48), ms)
                      for i, ms in enumerate(times)), 10,
               time_base=Fraction(1, 1000))
    res = open_video(path, 'pyav')
    assert res['total_frames'] == 22  # 2.2 s at 10 fps
    shown = [read_stamp(x) for x in decode(res, [8, 9, 10, 11, 12, 21])]
    assert shown == [8, 9, 9, 9, 10, 19]
    assert open_video(path, 'decord')['total_frames'] == 20


def test_a_duration_rounded_up_repeats_the_last_frame(videos):
    res = open_video(videos['long_gop_10fps.mkv'], 'pyav')
    res['video_reader'].total_frames = res['total_frames'] = 131  # 130 real
    shown = [read_stamp(x) for x in decode(res, [128, 129, 130])]
    assert shown == [128, 129, 129]
    res['video_reader'].total_frames = 140  # 10 missing: an error
    with pytest.raises(IOError, match='long_gop_10fps.mkv.*truncated'):
        decode(dict(res, total_frames=140), [139])


def test_unknown_backend():
    with pytest.raises(ValueError, match='backends'):
        TRANSFORMS.build(dict(type='TALVideoInit', backends=('opencv', )))


def test_reader_checks_indices(videos):
    reader = PyAVVideoReader(videos['small_25fps.mp4'])
    with pytest.raises(IndexError, match='small_25fps.mp4'):
        reader.get_batch([75])
    assert reader.get_batch([]) == []

"""Peak memory and speed of ``localize_video`` on a short and a long video.

    python tools/analysis/benchmark_inference.py [--short 30] [--long 300] \
        [--size 1280x720] [--fps 30] [--backends decord pyav] \
        [--work-dir work_dirs/benchmark_inference]

Writes a short and a long video with PyAV (libx264, a panning texture and a
moving disc; kept in ``--work-dir`` and reused), then, for each video and
decoding backend, runs :func:`re2tal_mm.apis.localize_video` with the demo
config's model (random weights) in a fresh process on ``--threads`` threads
and prints a table: the process's resident memory before the call (model and
libraries loaded) and its peak (``ru_maxrss``), and wall seconds per minute
of video. Memory that scales with the window, not the video, gives the long
video about the short one's peak.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--short', type=float, default=30.0,
                   help='short video length (s) (default: %(default)s)')
    p.add_argument('--long', type=float, default=300.0,
                   help='long video length (s) (default: %(default)s)')
    p.add_argument('--size', default='1280x720',
                   help='video size WxH (default: %(default)s)')
    p.add_argument('--fps', type=int, default=30,
                   help='video frame rate (default: %(default)s)')
    p.add_argument('--backends', nargs='+', default=['decord', 'pyav'],
                   choices=['decord', 'pyav'],
                   help='decoding backends (default: %(default)s)')
    p.add_argument('--config', default=CONFIG,
                   help='model config (default: the demo config)')
    p.add_argument('--threads', type=int, default=1,
                   help='torch / OpenMP threads (default: %(default)s)')
    p.add_argument('--work-dir',
                   default=osp.join('work_dirs', 'benchmark_inference'),
                   help='where the videos are written (default: '
                   '%(default)s)')
    p.add_argument('--child', nargs=2, metavar=('VIDEO', 'BACKEND'),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def write_video(path: str, seconds: float, width: int, height: int,
                fps: int, seed: int = 0) -> float:
    """Write an H.264 mp4 of a panning texture and a moving disc.

    Args:
        path (str): Output file.
        seconds (float): Length.
        width (int): Frame width.
        height (int): Frame height.
        fps (int): Frame rate.
        seed (int): Seed of the texture. Defaults to 0.

    Returns:
        float: Seconds taken.
    """
    import cv2
    import numpy as np

    from re2tal_mm.datasets.synthetic import write_h264
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    pad = max(width, height) // 6
    small = rng.integers(0, 256, ((height + pad) // 16 + 1,
                                  (width + pad) // 16 + 1, 3), np.uint8)
    canvas = cv2.resize(small, (width + pad, height + pad),
                        interpolation=cv2.INTER_CUBIC)
    tmp = path + '.part.mp4'

    def frames():
        for i in range(int(round(seconds * fps))):
            t = i / fps
            x = int(pad / 2 * (1 + np.sin(0.3 * t)))
            y = int(pad / 2 * (1 + np.cos(0.2 * t)))
            img = np.ascontiguousarray(canvas[y:y + height, x:x + width])
            cv2.circle(img, (int(width / 2 + width / 3 * np.sin(t)),
                             int(height / 2 + height / 3 * np.sin(0.7 * t))),
                       height // 10, (230, 40, 40), -1)
            yield img

    write_h264(tmp, frames(), fps, options={'preset': 'veryfast',
                                            'crf': '28'})
    os.replace(tmp, path)
    return time.perf_counter() - start


def run_child(video: str, backend: str, config: str, threads: int) -> dict:
    """Localize ``video`` in this process; its timings and memory."""
    import resource

    import torch
    torch.set_num_threads(threads)
    from re2tal_mm.apis import init_localizer, localize_video
    torch.manual_seed(0)
    model = init_localizer(config)  # random weights
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = localize_video(model, video, progress=False,
                            backends=(backend, ))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(video=video, backend=backend, duration=result['duration'],
                seconds=wall, before_mib=before / 1024,
                peak_mib=peak / 1024, detections=len(result['results']))


def measure(video: str, backend: str, args) -> dict:
    """Run :func:`run_child` in a fresh interpreter."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES='')
    cmd = [sys.executable, osp.abspath(__file__), '--child', video, backend,
           '--config', args.config, '--threads', str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f'error: localize_video failed on {video} ({backend}):\n'
                 f'{res.stderr[-3000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_videos(args) -> list:
    """The (length, path) of the short and the long video, written once."""
    width, height = (int(v) for v in args.size.lower().split('x'))
    os.makedirs(args.work_dir, exist_ok=True)
    videos = []
    for seconds in (args.short, args.long):
        path = osp.join(args.work_dir, f'video_{seconds:g}s_{width}x'
                        f'{height}_{args.fps}fps.mp4')
        if not osp.isfile(path):
            took = write_video(path, seconds, width, height, args.fps)
            print(f'wrote {path} ({osp.getsize(path) / 2**20:.1f} MiB) in '
                  f'{took:.0f} s', flush=True)
        videos.append((seconds, path))
    return videos


def print_table(rows: list) -> None:
    print('| backend | video (s) | RSS before (MiB) | peak RSS (MiB) | '
          'peak - before (MiB) | s / min of video |')
    print('|---|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f'| {r["backend"]} | {r["duration"]:.0f} | '
              f'{r["before_mib"]:.0f} | {r["peak_mib"]:.0f} | '
              f'{r["peak_mib"] - r["before_mib"]:.0f} | '
              f'{60 * r["seconds"] / r["duration"]:.1f} |')
    for backend in dict.fromkeys(r['backend'] for r in rows):
        short, long = [r for r in rows if r['backend'] == backend][:2]
        print(f'{backend}: long / short peak RSS '
              f'{long["peak_mib"] / short["peak_mib"]:.2f}x')


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_child(*args.child, args.config, args.threads)))
        return
    if not osp.isfile(args.config):
        sys.exit(f'error: config not found: {args.config}')
    videos = make_videos(args)
    rows = []
    for backend in args.backends:
        for _, path in videos:
            rows.append(measure(path, backend, args))
            print(f'{backend} {osp.basename(path)}: '
                  f'{rows[-1]["seconds"]:.1f} s, peak '
                  f'{rows[-1]["peak_mib"]:.0f} MiB', flush=True)
    print_table(rows)


if __name__ == '__main__':
    main()

"""`make demo`: reversible end-to-end TAL on a synthetic video dataset.

1. writes a small synthetic video dataset
   (``tools/data/make_synthetic_dataset.py``) into ``--data``;
2. trains the demo config twice with ``mim train mmaction2``: the Swin backbone
   rewired to reversible (the config's ``model.rewire``) and, for comparison,
   the same model un-rewired (``model.rewire=None``);
3. evaluates both with ``mim test mmaction2``;
4. writes ``work_dirs/demo/summary.json`` and prints the table made from it;
5. localizes the actions of one validation video with the reversible model
   (``demo/localize_video.py``) and plots them against the ground truth in
   ``work_dirs/demo/timeline.png``.

Peak memory is the peak resident memory of the training process tree (CPU)
as reported by the kernel when it ends (``wait4``); time per iteration is the
median of the logged iteration times after the first logged ones.
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 're2tal',
                  're2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py')
VARIANTS = {
    'reversible': [],
    'plain': ['model.rewire=None'],
}


def run(cmd, **kwargs):
    """Run a command, streaming its output; return its peak RSS in MiB."""
    print('$', ' '.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=REPO, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f'demo: command failed with exit code {code}: '
                 f'{" ".join(cmd)}')
    return usage.ru_maxrss / 1024  # kB on Linux


def is_current_dataset(ann_file):
    """Whether ``ann_file`` exists and the current generator wrote it."""
    from re2tal_mm.datasets.synthetic import VERSION
    if not osp.exists(ann_file):
        return False
    with open(ann_file) as f:
        return json.load(f).get('version') == VERSION


def latest_json(work_dir, pattern):
    files = sorted(glob.glob(osp.join(work_dir, '*', pattern)),
                   key=osp.getmtime)
    if not files:
        sys.exit(f'demo: no {pattern} under {work_dir}')
    return files[-1]


def seconds_per_iter(work_dir):
    times = []
    scalars = latest_json(work_dir, osp.join('vis_data', 'scalars.json'))
    with open(scalars) as f:
        for line in f:
            record = json.loads(line)
            if 'time' in record and 'loss' in record:
                times.append(record['time'])
    return statistics.median(times[len(times) // 5:]) if times else \
        float('nan')


def test_metrics(work_dir):
    """The metrics `mim test` logged (LoggerHook dumps them as json)."""
    with open(latest_json(work_dir, '*.json')) as f:
        metrics = json.load(f)

    def pick(key):
        found = [v for k, v in metrics.items() if k.split('/')[-1] == key]
        if not found:
            sys.exit(f'demo: no {key} among the test metrics '
                     f'{sorted(metrics)}')
        return found[0]

    return {'mAP@0.5': pick('mAP@0.50'), 'average_mAP': pick('average_mAP')}


def plot_validation_video(args, env):
    """Timeline of the reversible model on the first validation video."""
    ann_file = osp.join(args.data, 'annotations.json')
    with open(ann_file) as f:
        database = json.load(f)['database']
    video_id = sorted(v for v, info in database.items()
                      if info['subset'] == 'validation')[0]
    work_dir = osp.join(args.work_dir, 'reversible')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    print(f'\n==> localizing {video_id} with the reversible model', flush=True)
    run([sys.executable, osp.join(REPO, 'demo', 'localize_video.py'),
         osp.join(args.data, 'videos', video_id + '.mp4'), CONFIG, checkpoint,
         '--out', osp.join(args.work_dir, 'timeline.json'),
         '--plot', osp.join(args.work_dir, 'timeline.png'),
         '--gt', ann_file, '--score-thr', '0.1', '--max-segments', '8'],
        env=env)


def format_table(summary):
    rows = ['| model | mAP@0.5 | average mAP | peak memory (MiB) | s / iter |',
            '|---|---:|---:|---:|---:|']
    for name, r in summary.items():
        rows.append(f"| {name} | {r['mAP@0.5']:.3f} | "
                    f"{r['average_mAP']:.3f} | "
                    f"{r['peak_memory_mib']:.0f} | {r['sec_per_iter']:.3f} |")
    return '\n'.join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', default=osp.join(REPO, 'data', 'synthetic'),
                        help='dataset folder (generated if missing); passed '
                        'to mim train / mim test as data_root')
    parser.add_argument('--work-dir',
                        default=osp.join(REPO, 'work_dirs', 'demo'))
    parser.add_argument('--videos', type=int, default=96)
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the config\'s number of epochs')
    args = parser.parse_args()
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    start = time.time()
    if not is_current_dataset(osp.join(args.data, 'annotations.json')):
        run([sys.executable, osp.join(REPO, 'tools', 'data',
                                      'make_synthetic_dataset.py'),
             '--out', args.data, '--videos', str(args.videos)], env=env)
    # the one key that moves the config's data (its DataRootRunner gives it
    # to every dataset; the metric reads the dataset's annotation file)
    data_options = [f'data_root={osp.abspath(args.data)}']
    if args.epochs:
        data_options.append(f'train_cfg.max_epochs={args.epochs}')
    summary = {}
    for name, options in VARIANTS.items():
        work_dir = osp.join(args.work_dir, name)
        print(f'\n==> [{name}] training', flush=True)
        peak = run([mim, 'train', 'mmaction2', CONFIG, '--gpus', '0',
                    '--work-dir', work_dir, '--cfg-options', *data_options,
                    *options], env=env)
        sec = seconds_per_iter(work_dir)
        print(f'\n==> [{name}] testing', flush=True)
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        run([mim, 'test', 'mmaction2', CONFIG, '--gpus', '0', '--checkpoint',
             checkpoint, '--work-dir', work_dir, '--cfg-options',
             *data_options, *options], env=env)
        summary[name] = dict(test_metrics(work_dir), peak_memory_mib=peak,
                             sec_per_iter=sec)
    plot_validation_video(args, env)
    path = osp.join(args.work_dir, 'summary.json')
    with open(path, 'w') as f:
        json.dump(summary, f, indent=2)
    with open(path) as f:
        print('\n' + format_table(json.load(f)))
    print(f'\nsummary: {path}  (total {time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()

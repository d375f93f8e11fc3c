"""Peak memory and step time of a training step: plain/with_cp/reversible.

Each (model, frames, variant) runs in a fresh subprocess. On CPU the figure is
the peak RSS over the pre-step baseline (the high-water mark is reset through
``/proc/self/clear_refs``), run with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed
tensors go back to the system; on CUDA it is ``max_memory_allocated`` over the
pre-step allocation. Prints a markdown table and writes a PNG plot of memory
versus number of frames.

Example::

    python tools/analysis/benchmark_memory.py --models swin-t slowfast-r50 \
        --frames 8 16 32 --size 224 --out-dir work_dirs/benchmark
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from benchmark_models import BUILDERS, build_backbone

VARIANTS = ('plain', 'with_cp', 'reversible')
MODELS = tuple(BUILDERS)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+',
                        default=['swin-t', 'slowfast-r50'],
                        choices=MODELS)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=VARIANTS)
    parser.add_argument('--frames', nargs='+', type=int, default=[8, 16, 32])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--steps', type=int, default=1,
                        help='step time is the median over this many steps '
                        '(memory is always that of the first)')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_memory')
    parser.add_argument('--worker', action='store_true',
                        help='internal: measure one configuration')
    parser.add_argument('--variant', choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args()


def rss_mib(field: str = 'VmRSS') -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f'{field} not in /proc/self/status')


def measure(args) -> dict:
    """One training step (forward + backward) of one configuration."""
    import torch
    from re2tal_mm.rewiring import rewire
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_backbone(args.models[0], args.variant == 'with_cp')
    if args.variant == 'reversible':
        rewire(model, mode='reversible')
    model.to(device).train()
    x = torch.randn(args.batch, 3, args.frames[0], args.size, args.size,
                    device=device)
    cuda = device.type == 'cuda'
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = rss_mib()
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current RSS
    times = []
    for i in range(max(args.steps, 1)):
        start = time.perf_counter()
        out = model(x)
        outs = out if isinstance(out, tuple) else (out, )
        sum(o.float().mean() for o in outs).backward()
        del out, outs
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if i == 0:
            peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else
                    rss_mib('VmHWM'))
    step = sorted(times)[len(times) // 2]
    return dict(model=args.models[0], variant=args.variant,
                frames=args.frames[0], peak_mib=peak - base, step_s=step)


def run_worker(model, variant, frames, args) -> dict:
    """Measure one configuration in a fresh interpreter."""
    cmd = [sys.executable, osp.abspath(__file__), '--worker', '--models',
           model, '--variant', variant, '--frames', str(frames), '--size',
           str(args.size), '--batch', str(args.batch), '--device',
           args.device, '--steps', str(args.steps)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{model}/{variant}/{frames} failed:\n'
                           f'{proc.stderr[-2000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(rows) -> str:
    lines = ['| model | frames | variant | peak MiB | x plain | step s | '
             'x plain |', '|---|---|---|---|---|---|---|']
    plain = {(r['model'], r['frames']): r for r in rows
             if r['variant'] == 'plain'}
    for r in rows:
        ref = plain.get((r['model'], r['frames']))
        mem = f'{r["peak_mib"] / ref["peak_mib"]:.2f}' if ref else '-'
        tim = f'{r["step_s"] / ref["step_s"]:.2f}' if ref else '-'
        lines.append(f'| {r["model"]} | {r["frames"]} | {r["variant"]} | '
                     f'{r["peak_mib"]:.0f} | {mem} | {r["step_s"]:.2f} | '
                     f'{tim} |')
    return '\n'.join(lines)


def plot(rows, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    models = sorted({r['model'] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4),
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        for variant in VARIANTS:
            pts = sorted((r['frames'], r['peak_mib']) for r in rows
                         if r['model'] == model and r['variant'] == variant)
            if pts:
                ax.plot(*zip(*pts), marker='o', label=variant)
        ax.set(title=model, xlabel='frames', ylabel='peak memory (MiB)')
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    args = parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    os.makedirs(args.out_dir, exist_ok=True)
    jobs = [(m, f, v) for m in args.models for f in args.frames
            for v in args.variants]
    rows = []
    for i, (model, frames, variant) in enumerate(jobs, 1):
        print(f'[{i}/{len(jobs)}] {model} {frames} frames {variant} ...',
              end=' ', flush=True)
        row = run_worker(model, variant, frames, args)
        print(f'{row["peak_mib"]:.0f} MiB, {row["step_s"]:.2f} s',
              flush=True)
        rows.append(row)
    table = markdown_table(rows)
    print(table)
    with open(osp.join(args.out_dir, 'results.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    with open(osp.join(args.out_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')
    png = osp.join(args.out_dir, 'memory_vs_frames.png')
    plot(rows, png)
    print(f'plot written to {png}')


if __name__ == '__main__':
    main()

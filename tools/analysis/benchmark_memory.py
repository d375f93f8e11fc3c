"""Peak memory and step time of a training step, per rewiring variant.

Variants: ``plain``, ``with_cp`` (activation checkpointing), and one per
memory preset of ``rewire``: ``reversible+fast`` (``rewire(model,
memory='fast')``), ``reversible`` (``rewire(model)``, the ``'balanced'``
preset) and ``reversible+floor`` (``rewire(model, memory='floor')``:
piecewise recompute, non-reversible layers recomputed or checkpointed).
For the ViTs (``vit-b``, ``vit-b-24``) as ``ClipBatchedViT`` (16-frame
clips, SDPA attention everywhere) also ``full`` (plain fine-tuning),
``adatad`` (frozen backbone, temporal adapters, checkpointed blocks) and
``reversible+adapters`` (frozen, temporal adapters, rewired with
``memory='floor'``), with trainable parameters and AdamW state (2 floats per
trainable parameter) beside the peak, and the shape arithmetic of the three
for ViT-B/L/g at 768x160 and 1536x224 (``adapter_arithmetic.py``). Each
(model, frames, variant) runs in fresh subprocesses: on CPU one measures
the memory and another, with the default allocator, the step time
(:func:`measure_row`).
On CPU the figure is the peak RSS over the pre-step baseline (the high-water
mark is reset through ``/proc/self/clear_refs``) of the step after a
warm-up step (:func:`warm_up`), run with
``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go back to the system; on
CUDA it is ``max_memory_allocated`` over the pre-step allocation. The input
clip is allocated after the baseline, so it is part of the figure.

Beside each measurement the analytic floor of a reversible step is given:
two streams per rewired stage, the input clip and the parameter gradients
(shapes from a forward on the ``meta`` device).

Modes:

* default: a markdown table and a plot of memory versus frames;
* ``--scan-frames``: for ``--budget-gib``, the largest number of frames each
  variant trains (a linear fit on two small runs predicts it, then bisection
  in multiples of ``--frame-unit`` confirms it, each probe a fresh process);
* ``--profile``: where a step's time goes (forward, backward, and inside the
  reversible backward the recompute and the per-piece backward);
* ``--config CONFIG``: the model of a config, built from it as training
  builds it (its backbone, ``rewire`` spec with its memory preset, frozen
  norms, neck and head; ``--cfg-options`` overrides, e.g.
  ``model.rewire.memory=balanced``), one ``loss`` step at the config's own
  frames and crop or at ``--frames`` / ``--size``, and the figure at the
  config's own size (measured, or shape arithmetic from the reduced run:
  ``config_memory.py``). Memory only unless ``--steps`` > 1 asks for time.

Examples::

    python tools/analysis/benchmark_memory.py --models swin-t --frames 32 \
        --steps 3
    python tools/analysis/benchmark_memory.py --models swin-t --scan-frames \
        --budget-gib 8 --max-frames 1024
    python tools/analysis/benchmark_memory.py --models vit-b vit-b-24 \
        --variants full adatad reversible+adapters --frames 128 --size 160
    python tools/analysis/benchmark_memory.py --config configs/re2tal/\
re2tal-adapter_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py \
        --frames 128 --size 160
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from adapter_arithmetic import arithmetic_table, estimate
from benchmark_models import (ADAPTER_VARIANTS, BUILDERS, CLIP_VITS, INPUTS,
                              WITHOUT_CP, build_backbone, clip_vit)
from config_memory import (build_config_model, config_floor, config_table,
                           extrapolate, load_config, own_shape, preset,
                           stream_floor)
from scan_frames import scan_table, scan_variant

# the default run: the rewiring variants of every backbone
REWIRING_VARIANTS = ('plain', 'with_cp', 'reversible+fast', 'reversible',
                     'reversible+floor')
VARIANTS = (*REWIRING_VARIANTS, *ADAPTER_VARIANTS)
MODELS = tuple(BUILDERS)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+',
                        default=['swin-t', 'slowfast-r50'],
                        choices=MODELS)
    parser.add_argument('--variants', nargs='+',
                        default=list(REWIRING_VARIANTS), choices=VARIANTS)
    parser.add_argument('--frames', nargs='+', type=int,
                        help='defaults to 8 16 32, with --config to the '
                        "config's num_frames")
    parser.add_argument('--size', type=int,
                        help="defaults to 224, with --config to the config's"
                        ' crop_size')
    parser.add_argument('--config', nargs='+',
                        help='measure the model of these configs')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides of the configs')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--steps', type=int, default=1,
                        help='step time is the median over this many steps '
                        'after the warm-up step (memory is that of one step;'
                        ' on CPU time and memory come from two processes)')
    parser.add_argument('--profile', action='store_true',
                        help='also profile one step with torch.profiler')
    parser.add_argument('--scan-frames', action='store_true',
                        help='find the most frames each variant trains '
                        'within --budget-gib')
    parser.add_argument('--budget-gib', type=float, default=8.0)
    parser.add_argument('--max-frames', type=int, default=1024)
    parser.add_argument('--scan-start', type=int, default=16,
                        help='the fit uses this many frames and twice it')
    parser.add_argument('--frame-unit', type=int, default=2,
                        help='probed frames are multiples of this (the '
                        'temporal patch size)')
    parser.add_argument('--resolution', type=int, default=8,
                        help='bisection stops at this many frames')
    parser.add_argument('--max-probes', type=int, default=6,
                        help='probes per variant after the two fit runs')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_memory')
    parser.add_argument('--worker', action='store_true',
                        help='internal: measure one configuration')
    parser.add_argument('--variant', choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument('--abort-mib', type=float, help=argparse.SUPPRESS)
    parser.add_argument('--timing', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.config:
        args.frames = args.frames or [8, 16, 32]
        args.size = args.size or 224
    return args


def rss_mib(field: str = 'VmRSS') -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f'{field} not in /proc/self/status')


OVER_BUDGET = 3  # exit code of a worker stopped above --abort-mib


def abort_above(limit_mib: float, base_mib: float) -> None:
    """Stop the process as soon as its RSS exceeds the baseline by
    ``limit_mib`` (a failing scan probe need not run to its end)."""
    import threading

    def watch():
        while True:
            if rss_mib() - base_mib > limit_mib:
                os._exit(OVER_BUDGET)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def make_input(name, batch, frames, size, device):
    import torch
    if name is not None and INPUTS.get(name) == 'NCHW':
        return torch.randn(batch * frames, 3, size, size, device=device)
    return torch.randn(batch, 3, frames, size, size, device=device)


def analytic_floor(name, frames, size, batch, variant=None) -> dict:
    """Bytes a reversible step cannot do without, from the model's shapes.

    Two streams per rewired stage (the shape of the stage's chain input,
    seen by running the rewired model on the ``meta`` device), the input
    clip, and one gradient per trainable parameter. Float32.
    """
    from re2tal_mm.rewiring import rewire
    model = clip_vit(name, variant) if variant in ADAPTER_VARIANTS else \
        build_backbone(name, False)
    model = rewire(model.to('meta'), 'autograd')
    return stream_floor(model, model,
                        make_input(name, batch, frames, size, 'meta'))


def build_variant(args):
    from re2tal_mm.rewiring import rewire
    if args.config:
        return build_config_model(load_config(args.config[0],
                                              args.cfg_options))
    name, variant = args.models[0], args.variant
    if variant in ADAPTER_VARIANTS:
        if name not in CLIP_VITS:
            raise ValueError(f'variant {variant} needs a ViT model '
                             f'({sorted(CLIP_VITS)}), got {name}')
        return clip_vit(name, variant)
    model = build_backbone(name, variant == 'with_cp')
    if variant == 'reversible':
        rewire(model, mode='reversible')
    elif variant.startswith('reversible+'):  # a memory preset
        rewire(model, mode='reversible', memory=variant.split('+')[1])
    return model


def train_step(model, x):
    """Forward and backward of ``mean`` of the outputs; returns the times."""
    from torch.autograd.profiler import record_function
    start = time.perf_counter()
    with record_function('step.forward'):
        out = model(x)
        outs = out if isinstance(out, tuple) else (out, )
        loss = sum(o.float().mean() for o in outs)
    mid = time.perf_counter()
    with record_function('step.backward'):
        loss.backward()
    return mid - start, time.perf_counter() - mid


def profile_step(model, x) -> dict:
    """Seconds of one profiled step: forward, backward, and inside the
    reversible backward the recompute and the per-piece backward."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, x)
    events = {e.key: e for e in prof.key_averages()}

    def total(key):
        e = events.get(key)
        return e.cpu_time_total / 1e6 if e is not None else 0.0

    result = {k: total(k) for k in (
        'step.forward', 'step.backward', 're2tal.recompute',
        're2tal.piece_backward')}
    print(prof.key_averages().table(sort_by='self_cpu_time_total',
                                    row_limit=15), file=sys.stderr)
    return result


def warm_up(model, x) -> None:
    """One training step before the baseline, its memory given back.

    The first step of a process pages in the code of every kernel it runs
    and fills the libraries' caches (about 17 MiB of RSS for ViT-B, the
    same for every variant), memory no later step asks for again; measured
    from the second step, the CPU figure is the step's own memory, as
    ``max_memory_allocated`` is on CUDA.
    """
    train_step(model, x)
    model.zero_grad(set_to_none=True)


def measure(args) -> dict:
    """One configuration: the peak memory of one training step, or with
    ``--timing`` the step time (median over ``--steps``)."""
    import torch
    torch.manual_seed(0)
    name = None if args.config else args.models[0]
    device = torch.device(args.device)
    model = build_variant(args)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.to(device).train()
    cuda = device.type == 'cuda'
    if args.abort_mib and not cuda:  # the warm-up step is watched too
        abort_above(args.abort_mib, rss_mib())
    warm_up(model, make_input(name, args.batch, args.frames[0], args.size,
                              device))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = rss_mib()
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current RSS
    x = make_input(name, args.batch, args.frames[0], args.size, device)
    times = []
    for i in range(max(args.steps, 1)):
        start = time.perf_counter()
        fwd, _ = train_step(model, x)
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start, fwd))
        if i == 0:
            peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else
                    rss_mib('VmHWM'))
        model.zero_grad(set_to_none=True)
    step, fwd = sorted(times)[len(times) // 2]
    row = dict(step_s=step, forward_s=fwd)
    if not args.timing:
        row.update(model=name, variant=args.variant, frames=args.frames[0],
                   size=args.size, peak_mib=peak - base, trainable=trainable,
                   adamw_mib=8 * trainable / 2**20)
        if args.config:
            row.update(config_floor(load_config(args.config[0],
                                                args.cfg_options),
                                    args.frames[0], args.size, args.batch))
        else:
            row.update(analytic_floor(name, args.frames[0], args.size,
                                      args.batch, args.variant))
    if args.profile:
        row['profile'] = profile_step(model, x)
    return row


def run_worker(model, variant, frames, args, steps=None,
               abort_mib=None, timing=False, config=None) -> dict:
    """Measure one configuration (or with ``config`` the model of that
    config file) in a fresh interpreter (None when it was stopped above
    ``abort_mib``): its memory with an allocator that gives freed memory
    back (``MALLOC_MMAP_THRESHOLD_``), or with ``timing`` its step time
    with the default allocator."""
    cmd = [sys.executable, osp.abspath(__file__), '--worker', '--frames',
           str(frames), '--size', str(args.size), '--batch', str(args.batch),
           '--device', args.device, '--steps', str(steps or args.steps)]
    if config:
        cmd += ['--config', config]
        if args.cfg_options:
            cmd += ['--cfg-options', *args.cfg_options]
    else:
        cmd += ['--models', model, '--variant', variant]
    if timing:
        cmd.append('--timing')
    if args.profile and (timing or args.device != 'cpu'):
        cmd.append('--profile')  # the process that gives the step time
    if abort_mib:
        cmd += ['--abort-mib', str(abort_mib)]
    env = dict(os.environ)
    if timing:
        env.pop('MALLOC_MMAP_THRESHOLD_', None)
    else:
        env['MALLOC_MMAP_THRESHOLD_'] = '65536'
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode == OVER_BUDGET and abort_mib:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f'{config or model}/{variant}/{frames} failed:\n'
                           f'{proc.stderr[-2000:]}')
    if '--profile' in cmd:
        print(proc.stderr[-6000:], file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_row(model, variant, frames, args) -> dict:
    """Peak memory and step time of one configuration. On CPU they come
    from two processes: returning freed memory to the system makes every
    large allocation a fresh mapping whose pages the kernel zeroes on first
    touch, which inflates the time (Swin-T 32f ``reversible+floor``: 27 s a
    step against 16 s with the default allocator)."""
    if args.device != 'cpu':
        return run_worker(model, variant, frames, args)
    row = run_worker(model, variant, frames, args, steps=1)
    row.update(run_worker(model, variant, frames, args, timing=True))
    return row


def markdown_table(rows) -> str:
    """Measured rows (peak over the baseline, ratios, peak without the
    parameter gradients) and the analytic floor per configuration."""
    lines = ['| model | frames | variant | peak MiB | x plain | x with_cp | '
             'x floor | peak - grads MiB | step s | x plain |',
             '|---|---|---|---|---|---|---|---|---|---|']
    ref = {(r['model'], r['frames'], r['variant']): r for r in rows}
    for r in rows:
        plain = ref.get((r['model'], r['frames'], 'plain'))
        cp = ref.get((r['model'], r['frames'], 'with_cp'))
        mem = f'{r["peak_mib"] / plain["peak_mib"]:.3f}' if plain else '-'
        mcp = f'{r["peak_mib"] / cp["peak_mib"]:.3f}' if cp else '-'
        tim = f'{r["step_s"] / plain["step_s"]:.2f}' if plain else '-'
        lines.append(
            f'| {r["model"]} | {r["frames"]} | {r["variant"]} | '
            f'{r["peak_mib"]:.0f} | {mem} | {mcp} | '
            f'{r["peak_mib"] / r["floor_mib"]:.2f} | '
            f'{r["peak_mib"] - r["grads_mib"]:.0f} | {r["step_s"]:.2f} | '
            f'{tim} |')
    floors = {(r['model'], r['frames']): r for r in rows}
    lines.append('')
    lines.append('| model | frames | floor MiB | streams | input | grads |')
    lines.append('|---|---|---|---|---|---|')
    for (model, frames), r in floors.items():
        lines.append(f'| {model} | {frames} | {r["floor_mib"]:.0f} | '
                     f'{r["streams_mib"]:.0f} | {r["input_mib"]:.0f} | '
                     f'{r["grads_mib"]:.0f} |')
    return '\n'.join(lines)


def adapter_table(rows) -> str:
    """The temporal-adapter variants: peak, ratios to ``full`` and
    ``adatad``, trainable parameters and AdamW state (2 floats each), and
    the shape arithmetic of the same step (without the weights, which the
    measured peak leaves out too)."""
    rows = [r for r in rows if r['variant'] in ADAPTER_VARIANTS]
    ref = {(r['model'], r['frames'], r['variant']): r for r in rows}
    lines = ['| model | frames | variant | peak MiB | x full | x adatad | '
             'trainable params | AdamW state MiB | step s | '
             'arithmetic MiB |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        depth = CLIP_VITS[r['model']][0]
        est = estimate('ViT-B', r['frames'], r.get('size', 224),
                       r['variant'], depth)
        est = (est['total'] - est['weights'] - est['adam']) / 2**20
        ratios = []
        for other in ('full', 'adatad'):
            o = ref.get((r['model'], r['frames'], other))
            ratios.append(f'{r["peak_mib"] / o["peak_mib"]:.3f}' if o
                          else '-')
        lines.append(
            f'| {r["model"]} | {r["frames"]} | {r["variant"]} | '
            f'{r["peak_mib"]:.0f} | {ratios[0]} | {ratios[1]} | '
            f'{r["trainable"]:,} | {r["adamw_mib"]:.1f} | '
            f'{r["step_s"]:.1f} | {est:.0f} |')
    return '\n'.join(lines)


def profile_table(rows) -> str:
    lines = ['| model | frames | variant | forward s | backward s | '
             'recompute s | piece backward s |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        p = r.get('profile')
        if p:
            lines.append(
                f'| {r["model"]} | {r["frames"]} | {r["variant"]} | '
                f'{p["step.forward"]:.2f} | {p["step.backward"]:.2f} | '
                f'{p["re2tal.recompute"]:.2f} | '
                f'{p["re2tal.piece_backward"]:.2f} |')
    return '\n'.join(lines)


def plot(rows, path: str, budget_mib=None) -> None:
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
        floor = sorted({(r['frames'], r['floor_mib']) for r in rows
                        if r['model'] == model})
        ax.plot(*zip(*floor), linestyle='--', color='k',
                label='analytic floor')
        if budget_mib:
            ax.axhline(budget_mib, color='r', linestyle=':', label='budget')
        ax.set(title=model, xlabel='frames', ylabel='peak memory (MiB)')
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write(args, name, text):
    with open(osp.join(args.out_dir, name), 'w') as f:
        f.write(text + '\n')


def measure_configs(args) -> None:
    """``--config``: per config, one step of its model (memory; time too
    when ``--steps`` > 1) at its own frames and size, or at ``--frames`` /
    ``--size`` and then, by shape arithmetic from a second run (the
    second ``--frames``, or half the first), at its own."""
    rows = []
    for path in args.config:
        cfg = load_config(path, args.cfg_options)
        own = own_shape(cfg)
        frames = args.frames or [own[0]]
        run = argparse.Namespace(**{**vars(args),
                                    'size': args.size or own[1]})
        if (frames[0], run.size) != own and len(frames) == 1:
            frames = [frames[0] // 2, frames[0]]
        runs = []
        for f in frames[:2]:
            print(f'{osp.basename(path)} {f}x{run.size} ...', end=' ',
                  flush=True)
            row = run_worker(None, None, f, run, steps=1, config=path)
            if args.steps > 1:  # time: another process, default allocator
                row.update(run_worker(None, None, f, run, timing=True,
                                      config=path))
            print(f'{row["peak_mib"]:.0f} MiB', flush=True)
            runs.append(row)
        row = dict(runs[-1], config=osp.basename(path), preset=preset(cfg),
                   **extrapolate(runs, cfg))
        print(f'at {row["own_frames"]}x{row["own_size"]}: '
              f'{row["own_mib"]:.0f} MiB ({row["own_how"]})', flush=True)
        rows.append(row)
    table = config_table(rows)
    print(table)
    with open(osp.join(args.out_dir, 'configs.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    write(args, 'configs.md', table)


def main():
    args = parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    os.makedirs(args.out_dir, exist_ok=True)
    if args.config:
        measure_configs(args)
        return
    rows = []
    if args.scan_frames:
        results = []
        for model in args.models:
            for variant in args.variants:
                results.append(scan_variant(model, variant, args, rows,
                                            run_worker))
        table = scan_table(results, args.budget_gib)
        print(table)
        write(args, 'scan.md', table)
        with open(osp.join(args.out_dir, 'scan.json'), 'w') as f:
            json.dump(dict(results=results, probes=rows), f, indent=2)
        png = osp.join(args.out_dir, 'scan_memory_vs_frames.png')
        plot(rows, png, args.budget_gib * 1024)
        print(f'plot written to {png}')
        return
    jobs = [(m, f, v) for m in args.models for f in args.frames
            for v in args.variants if not (v == 'with_cp' and m in WITHOUT_CP)]
    skipped = sorted(set(args.models) & WITHOUT_CP)
    if 'with_cp' in args.variants and skipped:
        print(f'with_cp skipped for {", ".join(skipped)} (no activation '
              'checkpointing)')
    for i, (model, frames, variant) in enumerate(jobs, 1):
        print(f'[{i}/{len(jobs)}] {model} {frames} frames {variant} ...',
              end=' ', flush=True)
        row = measure_row(model, variant, frames, args)
        print(f'{row["peak_mib"]:.0f} MiB, {row["step_s"]:.2f} s',
              flush=True)
        rows.append(row)
    table = markdown_table(rows)
    if any(r['variant'] in ADAPTER_VARIANTS for r in rows):
        table += ('\n\n' + adapter_table(rows) + '\n\nShape arithmetic '
                  '(float32, batch 1; what each would need on a GPU):\n\n'
                  + arithmetic_table())
    if args.profile:
        table += '\n\n' + profile_table(rows)
    print(table)
    with open(osp.join(args.out_dir, 'results.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    write(args, 'results.md', table)
    png = osp.join(args.out_dir, 'memory_vs_frames.png')
    plot(rows, png)
    print(f'plot written to {png}')


if __name__ == '__main__':
    main()

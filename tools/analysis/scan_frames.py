"""``--scan-frames`` of ``benchmark_memory.py``: the largest number of frames
each variant trains within a memory budget, found by fit, probe and bisection.
"""


def round_frames(frames: float, unit: int) -> int:
    return max(unit, int(frames // unit) * unit)


def scan_variant(model, variant, args, rows, run_worker) -> dict:
    """Largest frames within the budget: a linear fit on two small runs
    predicts it, probes confirm it and bisect (to ``--resolution`` frames or
    10%); hopeless probes (predicted over 1.5 budgets) are skipped and a
    probe stops as soon as it exceeds the budget. ``run_worker`` measures one
    configuration in a fresh process (``benchmark_memory.run_worker``)."""
    budget = args.budget_gib * 1024
    unit, probes = args.frame_unit, {}

    def probe(frames):
        print(f'  {model} {variant} {frames} frames ...', end=' ',
              flush=True)
        row = run_worker(model, variant, frames, args, steps=1,
                         abort_mib=budget)
        if row is None:  # stopped as soon as it went over the budget
            print('over budget', flush=True)
            probes[frames] = float('inf')
            return False
        print(f'{row["peak_mib"]:.0f} MiB, {row["step_s"]:.1f} s',
              flush=True)
        rows.append(row)
        probes[frames] = row['peak_mib']
        return row['peak_mib'] <= budget

    f0 = args.scan_start
    probe(f0)
    probe(2 * f0)
    slope = max((probes[2 * f0] - probes[f0]) / f0, 1e-6)
    offset = probes[f0] - slope * f0

    def predicted(frames):
        return offset + slope * frames

    pred = round_frames((budget - offset) / slope, unit)
    pred = min(pred, args.max_frames)
    fits = [f for f, m in probes.items() if m <= budget]
    lo = max(fits) if fits else 0
    hi = min([f for f, m in probes.items() if m > budget], default=None)
    candidate = pred if pred > lo and (hi is None or pred < hi) else None
    for _ in range(args.max_probes):
        if candidate is None:
            if hi is None:
                if lo >= args.max_frames:
                    break
                candidate = min(args.max_frames, round_frames(
                    lo + max(args.resolution, 0.1 * lo) + unit, unit))
            elif hi - lo <= max(args.resolution, 0.1 * lo):
                break
            else:
                candidate = round_frames((lo + hi) / 2, unit)
                if candidate <= lo:
                    break
        if predicted(candidate) > 1.5 * budget:
            hi = candidate  # hopeless: not run
        elif probe(candidate):
            lo = candidate
        else:
            hi = candidate
        candidate = None
    return dict(model=model, variant=variant, max_frames=lo,
                first_failing=hi, predicted=pred,
                peak_mib=probes.get(lo), capped=lo >= args.max_frames)


def scan_table(results, budget_gib) -> str:
    lines = [f'| model | variant | max frames within {budget_gib:g} GiB | '
             'x plain | peak MiB there | first failing | fit prediction |',
             '|---|---|---|---|---|---|---|']
    plain = {r['model']: r['max_frames'] for r in results
             if r['variant'] == 'plain'}
    for r in results:
        ratio = f'{r["max_frames"] / plain[r["model"]]:.1f}' \
            if plain.get(r['model']) else '-'
        cap = ' (cap)' if r['capped'] else ''
        peak = f'{r["peak_mib"]:.0f}' if r['peak_mib'] else '-'
        lines.append(f'| {r["model"]} | {r["variant"]} | '
                     f'{r["max_frames"]}{cap} | {ratio} | {peak} | '
                     f'{r["first_failing"] or "-"} | {r["predicted"]} |')
    return '\n'.join(lines)

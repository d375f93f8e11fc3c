"""Run an OpenTAD reference fixture through our model and compare.

A fixture (``../shared/reference/opentad/*.pth``; its README says what each
entry is) holds OpenTAD's weights, constructor or config, inputs and the
outputs of OpenTAD's own code. This tool uses only the weights, the
constructor / config and the inputs: it converts the weights with our
converter (:mod:`re2tal_mm.apis.opentad`), builds our equivalent model, and
writes our outputs for those inputs under the fixture's own entry names.
With ``--compare`` it also prints the max difference of every output against
the fixture's, and exits 1 when one is past its tolerance (float64
backbones and per-level detector outputs 1e-10, losses 1e-6, OpenTAD's
float32 NMS 1e-5, results within OpenTAD's rounding).

An OpenTAD TAL checkpoint (``{"epoch", "state_dict", ...}``) has no inputs:
it is converted, every tensor placed, and the counts printed.

Examples::

    python tools/check_opentad_parity.py \\
        ../shared/reference/opentad/actionformer.pth --out ours.pth --compare
"""
import argparse
import sys

import torch

from re2tal_mm.apis.opentad import kind_of
from re2tal_mm.apis.opentad.checkpoint import convert_checkpoint
from re2tal_mm.apis.opentad.parity import compare, format_rows, not_produced


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('fixture', help='an OpenTAD fixture (.pth)')
    parser.add_argument('--out', help='write our outputs here (.pth)')
    parser.add_argument('--compare', action='store_true',
                        help="print max differences against the fixture's "
                        'outputs; exit 1 past the tolerance')
    parser.add_argument('--all-rows', action='store_true',
                        help='print every compared entry, not only the '
                        'first 40')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    fixture = torch.load(args.fixture, map_location='cpu', weights_only=True)
    if 'epoch' in fixture and 'state_dict' in fixture:
        ours, report = convert_checkpoint(fixture, source=args.fixture)
        print(f'{args.fixture}: an OpenTAD checkpoint ({report["taken"]}); '
              f'kinds {report["kinds"]}; {report["mapped"]} tensors mapped, '
              f'{len(report["dropped"])} dropped; training state not carried '
              f'over: {", ".join(report["training_state"]) or "none"}')
        if args.out:
            torch.save(ours, args.out)
        return 0
    kind = kind_of(fixture)
    torch.manual_seed(0)
    with torch.no_grad():
        ours = kind.run_fixture(fixture)
    if args.out:
        torch.save(ours, args.out)
        print(f'our outputs written to {args.out}')
    if not args.compare:
        return 0
    rows = compare(fixture, ours)
    print(format_rows(rows, None if args.all_rows else 40))
    missing = not_produced(fixture, ours)
    if missing:
        print(f'not produced by us ({len(missing)}): {", ".join(missing)}')
    bad = [r for r in rows if not r.ok]
    worst = max((r.diff for r in rows), default=float('nan'))
    verdict = 'FAIL' if bad or not rows else 'OK'
    print(f'{verdict}: {kind.__name__.rsplit(".", 1)[-1]}, {len(rows)} '
          f'entries compared, {len(bad)} past tolerance, max |diff| '
          f'{worst:.3g}')
    return 1 if bad or not rows else 0


if __name__ == '__main__':
    sys.exit(main())

"""Write a small synthetic TAL dataset (mp4 videos + ActivityNet-style JSON).

Example::

    python tools/data/make_synthetic_dataset.py --out data/syn --videos 96
"""
import argparse
import time

from re2tal_mm.datasets.synthetic import make_synthetic_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--videos', type=int, default=96)
    parser.add_argument('--classes', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = make_synthetic_dataset(args.out, args.videos, args.classes,
                                  args.seed, progress=True)
    print(f'\nwrote {args.videos} videos and {path} in '
          f'{time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()

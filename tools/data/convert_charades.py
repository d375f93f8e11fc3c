"""Convert Charades CSVs to ActivityNet-style JSON (multi-label).

Each ``cNNN start end`` action becomes a segment (seconds, as in the file),
overlapping and multi-label segments kept as they are; ``duration`` is the
file's ``length``; the class list is ``c000`` .. ``c156`` or, with
``--classes``, the names of ``Charades_v1_classes.txt``. Per subset the tool
says what it read, assumed and dropped.

Example (``data_root`` = ``data/charades``)::

    D=../shared/data/charades
    python tools/data/convert_charades.py data/charades/charades.json \\
        --train $D/Charades_v1_train.csv --test $D/Charades_v1_test_200.csv
"""
import argparse

from re2tal_mm.datasets.anet_style import dump_tal_json
from re2tal_mm.datasets.multilabel import convert_charades


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='output JSON (its folder is created)')
    parser.add_argument('--train', help='Charades_v1_train.csv (subset '
                        '"training")')
    parser.add_argument('--test', help='Charades_v1_test.csv (subset '
                        '"testing")')
    parser.add_argument('--classes', help='Charades_v1_classes.txt '
                        '(default: labels c000..c156)')
    args = parser.parse_args(argv)
    csvs = {k: v for k, v in (('training', args.train),
                              ('testing', args.test)) if v}
    if not csvs:
        parser.error('give --train and/or --test')
    database, classes = convert_charades(csvs, args.classes)
    print(dump_tal_json(database, args.out, 'Charades v1', classes))
    return args.out


if __name__ == '__main__':
    main()

"""Charades (real files) and MultiTHUMOS (its documented layout):
multi-label converters and the mAP at 0.1:0.1:0.9 that OpenTAD reports."""
import csv
import json
import os.path as osp
import sys

import numpy as np
import pytest

from re2tal_mm.datasets import TALDataset
from re2tal_mm.datasets.multilabel import (CHARADES_CLASSES, convert_charades,
                                           convert_multithumos)
from re2tal_mm.evaluation import evaluate_detection
from re2tal_mm.evaluation.functional import DATASET_TIOU_THRESHOLDS
from tests.conftest import REPO, SHARED_DATA, shared_path
from tests.test_evaluation import (assert_equal_to_reference, assert_tie_free,
                                   reference_ap, thumos_like_results)

TOOLS_DATA = osp.join(REPO, 'tools', 'data')


def charades_file(name):
    return shared_path(osp.join(SHARED_DATA, 'charades', name))


def own_counts(path):
    """Videos, segments, classes and each segment as the file says."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    segs = [(r['id'], a.split()) for r in rows
            for a in r['actions'].split(';') if a]
    return rows, segs


@pytest.fixture(scope='module')
def charades():
    train = charades_file('Charades_v1_train.csv')
    test = charades_file('Charades_v1_test_200.csv')
    db, classes = convert_charades(dict(training=train, testing=test))
    return train, test, db, classes


def test_charades_on_real_files(charades, capsys):
    train, test, db, classes = charades
    assert classes == list(CHARADES_CLASSES)
    for subset, path, expect in (('training', train, (7985, 49809, 157)),
                                 ('testing', test, (199, 1834, 152))):
        rows, segs = own_counts(path)
        got = [(v, a) for v, i in db.items() if i['subset'] == subset
               for a in i['annotations']]
        assert (len(rows), len(segs), len({s[1][0] for s in segs})) == \
            expect
        assert len({v for v, i in db.items() if i['subset'] == subset}) \
            == len(rows)
        assert len(got) == len(segs)
        assert len({a['label'] for _, a in got}) == expect[2]
        # same segments, same order, seconds as written
        assert [(v, a['label'], a['segment']) for v, a in got] == [
            (v, c, [float(s), float(e)]) for v, (c, s, e) in segs]
        for r in rows:
            assert db[r['id']]['duration'] == float(r['length'])
    # overlapping multi-label segments are kept: e.g. the first video
    first = db['46GP8']['annotations']
    assert [a['label'] for a in first] == ['c092', 'c147']
    assert first[0]['segment'][0] < first[1]['segment'][1]  # they overlap


def test_charades_tool_and_dataset(tmp_path, capsys):
    """The tool's JSON (with its class list) loads in TALDataset."""
    sys.path.insert(0, TOOLS_DATA)
    try:
        import convert_charades as tool
        out = tool.main([
            str(tmp_path / 'charades.json'), '--test',
            charades_file('Charades_v1_test_200.csv')])
    finally:
        sys.path.remove(TOOLS_DATA)
    printed = capsys.readouterr().out
    assert 'testing: read Charades_v1_test_200.csv: 199 videos, 1834 ' \
        'segments, 152 classes present' in printed
    assert '584 segment(s) end after' in printed
    data = json.load(open(out))
    assert len(data['classes']) == 157
    ds = TALDataset(out, pipeline=[], subset='testing', lazy_init=True)
    assert len(ds.classes) == 157


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_charades_metric_equals_activitynet_port(charades):
    """protocol 'charades': ActivityNet's evaluator at 0.1:0.1:0.9 (as
    OpenTAD scores Charades), on the real test videos: equal to the literal
    ActivityNet port of tests/test_evaluation.py."""
    _, _, db, _ = charades
    test = {v: i for v, i in db.items() if i['subset'] == 'testing'}
    preds = thumos_like_results(test, np.random.default_rng(4))
    assert_tie_free(preds)
    res = evaluate_detection(test, preds, protocol='charades')
    assert res['tiou_thresholds'] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                                      0.8, 0.9]
    ref = reference_ap(test, preds, DATASET_TIOU_THRESHOLDS['charades'])
    assert assert_equal_to_reference(res, ref) <= 1e-9


def write_multithumos(root, with_list=True):
    """The release's layout: annotations/<class>.txt + class_list.txt."""
    ann = root / 'annotations'
    ann.mkdir(parents=True)
    files = {
        'BasketballDribble': ['video_validation_0000051 27.8 28.2',
                              'video_test_0000004 1.0 2.5'],
        'BasketballShot': ['video_validation_0000051 28.0 29.1',
                           'video_validation_0000051 28.0 29.1'],
        'Run': ['video_validation_0000051 20.5 31.0',
                'video_test_0000004 0.2 3.0', ''],
    }
    for name, lines in files.items():
        (ann / f'{name}.txt').write_text('\n'.join(lines) + '\n')
    if with_list:
        (root / 'class_list.txt').write_text(
            '1 Run\n2 BasketballDribble\n3 BasketballShot\n')
    return ann


def test_multithumos_layout(tmp_path, capsys):
    ann = write_multithumos(tmp_path)
    thumos = tmp_path / 'thumos.json'
    thumos.write_text(json.dumps(dict(database={
        'video_validation_0000051': dict(subset='validation',
                                         duration=30.0, fps=30.0,
                                         annotations=[])})))
    db, classes = convert_multithumos(str(ann), str(thumos))
    assert classes == ['Run', 'BasketballDribble', 'BasketballShot']
    v = db['video_validation_0000051']
    assert (v['subset'], v['duration'], v['fps']) == ('validation', 30.0,
                                                      30.0)
    # overlapping, multi-label and duplicate segments kept, seconds as given
    assert [(a['label'], a['segment']) for a in v['annotations']] == [
        ('Run', [20.5, 31.0]), ('BasketballDribble', [27.8, 28.2]),
        ('BasketballShot', [28.0, 29.1]), ('BasketballShot', [28.0, 29.1])]
    t = db['video_test_0000004']
    assert (t['subset'], t['duration']) == ('test', 3.0)
    assert 'fps' not in t
    out = capsys.readouterr().out
    assert 'test: read 3 class files: 1 videos, 2 segments' in out
    assert 'last segment end, no fps, for 1 video(s) not in thumos.json' \
        in out
    assert '1 segment(s) end after' in out  # Run ends at 31 > 30
    # without class_list.txt: sorted file names; the tool writes classes
    sys.path.insert(0, TOOLS_DATA)
    try:
        import convert_multithumos as tool
        other = tmp_path / 'other'
        out = tool.main([str(tmp_path / 'm.json'),
                         str(write_multithumos(other, False))])
    finally:
        sys.path.remove(TOOLS_DATA)
    assert json.load(open(out))['classes'] == sorted(classes)
    (ann / 'Jump.txt').write_text('video_test_0000004 1 2\n')
    with pytest.raises(ValueError, match='Jump'):
        convert_multithumos(str(ann))
    (ann / 'Jump.txt').unlink()
    (ann / 'Run.txt').write_text('video_train_1 1 2\n')
    with pytest.raises(ValueError, match='video_train_1'):
        convert_multithumos(str(ann))

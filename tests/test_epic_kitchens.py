"""EPIC-Kitchens-100: converter on the real validation files, and the
challenge's metric equal to a literal port of its evaluator
(tests/epic_reference.py)."""
import csv
import json
import os.path as osp
import sys
import time

import numpy as np
import pytest

from re2tal_mm.datasets.epic_kitchens import (NUM_NOUNS, convert_epic_kitchens,
                                              epic_predictions,
                                              load_epic_ground_truth,
                                              timestamp_to_seconds)
from re2tal_mm.evaluation import TALMetric, evaluate_detection
from tests import epic_reference as ref
from tests.conftest import REPO, SHARED_DATA, shared_path

EPIC = 'epic-kitchens-100'
TOOLS = osp.join(REPO, 'tools')
TOOLS_DATA = osp.join(REPO, 'tools', 'data')


def epic_file(name):
    return shared_path(osp.join(SHARED_DATA, 'epic-kitchens-100', name))


def epic_files():
    return dict(verb_classes=epic_file('EPIC_100_verb_classes.csv'),
                noun_classes=epic_file('EPIC_100_noun_classes.csv'),
                video_info=epic_file('EPIC_100_video_info.csv'))


@pytest.fixture(scope='module')
def val_rows():
    return ref.read_annotations(epic_file('EPIC_100_validation.csv'))


def test_converter_on_real_validation(val_rows, capsys):
    """Counts equal the file's own; each segment's seconds are its
    timestamps (as the official evaluator reads them), in file order."""
    val = epic_file('EPIC_100_validation.csv')
    videos = {r['video_id'] for r in val_rows}
    expect = dict(verb=len({r['verb_class'] for r in val_rows}),
                  noun=len({r['noun_class'] for r in val_rows}),
                  action=len({(r['verb_class'], r['noun_class'])
                              for r in val_rows}))
    assert (len(val_rows), len(videos)) == (9668, 138)
    assert expect == dict(verb=78, noun=211, action=1352)
    with open(epic_files()['video_info']) as f:
        info = {r['video_id']: r for r in csv.DictReader(f)}
    for task in ('verb', 'noun', 'action'):
        db, classes = convert_epic_kitchens(dict(validation=val), task=task,
                                            **epic_files())
        assert len(db) == len(videos)
        anns = [(v, a) for v, i in db.items() for a in i['annotations']]
        assert len(anns) == len(val_rows)
        assert len({a['label'] for _, a in anns}) == expect[task]
        assert len(classes) == dict(verb=97, noun=300,
                                    action=1352)[task]
        by_id = {a['narration_id']: (v, a) for v, a in anns}
        for r in val_rows:
            v, a = by_id[r['narration_id']]
            assert v == r['video_id']
            assert a['segment'] == [
                ref.timestamp_to_seconds(r['start_timestamp']),
                ref.timestamp_to_seconds(r['stop_timestamp'])]
            assert (a['verb_class'], a['noun_class']) == (
                int(r['verb_class']), int(r['noun_class']))
            assert classes.index(a['label']) >= 0
        for v, i in db.items():
            assert i['duration'] == float(info[v]['duration'])
            assert i['fps'] == float(info[v]['fps'])
    out = capsys.readouterr().out
    assert ('validation: read 9668 rows of EPIC_100_validation.csv: 138 '
            'videos, 9668 segments, 78 verb classes present') in out
    assert 'nothing assumed; nothing dropped' in out
    assert '1 segment(s) end after' in out


def test_timestamps_and_errors(tmp_path):
    assert timestamp_to_seconds('01:02:03.45') == 3600 + 120 + 3.45
    with pytest.raises(ValueError, match='12.5'):
        timestamp_to_seconds('12.5')
    classes = tmp_path / 'verbs.csv'
    classes.write_text('id,key\n0,take\n1,put\n')
    nouns = tmp_path / 'nouns.csv'
    nouns.write_text('id,key\n0,plate\n1,cup\n')
    info = tmp_path / 'info.csv'
    info.write_text('video_id,duration,fps\nP01_01,10.0,50\n')
    head = ('narration_id,video_id,start_timestamp,stop_timestamp,'
            'start_frame,stop_frame,verb_class,noun_class\n')
    ann = tmp_path / 'train.csv'
    ann.write_text(head + 'P01_01_0,P01_01,00:00:01.50,00:00:02.25,75,112,'
                   '1,0\nP01_01_1,P01_01,00:00:09.00,00:00:11.00,450,550,'
                   '0,1\n')
    kw = dict(verb_classes=str(classes), noun_classes=str(nouns),
              video_info=str(info))
    db, names = convert_epic_kitchens(dict(train=str(ann)), task='action',
                                      **kw)
    assert names == ['take,cup', 'put,plate']  # action-id order
    assert [a['segment'] for a in db['P01_01']['annotations']] == [
        [1.5, 2.25], [9.0, 11.0]]
    assert [a['label'] for a in db['P01_01']['annotations']] == [
        'put,plate', 'take,cup']
    bad = tmp_path / 'bad.csv'
    bad.write_text(head + 'P02_01_0,P02_01,00:00:01.00,00:00:02.00,1,2,0,0\n')
    with pytest.raises(KeyError, match="P02_01.*info.csv"):
        convert_epic_kitchens(dict(train=str(bad)), task='verb', **kw)
    bad.write_text(head + 'P01_01_0,P01_01,00:00:01.00,00:00:02.00,1,2,5,0\n')
    with pytest.raises(ValueError, match='verb 5'):
        convert_epic_kitchens(dict(train=str(bad)), task='verb', **kw)
    with pytest.raises(ValueError, match="task 'object'"):
        convert_epic_kitchens(dict(train=str(ann)), task='object', **kw)
    with pytest.raises(KeyError, match="entry 0 of video 'P01_01'.*noun"):
        epic_predictions({'P01_01': [dict(segment=[0, 1], score=.5)]},
                         'noun')


def challenge_results(rows, seed=0):
    """A submission made from the ground truth: every segment jittered
    (positive length), 80% right verb / noun, background detections, an
    unknown video; scores from one random draw, no ties."""
    rng = np.random.default_rng(seed)
    results = {}
    for r in rows:
        s = ref.timestamp_to_seconds(r['start_timestamp'])
        e = ref.timestamp_to_seconds(r['stop_timestamp'])
        n = 1 + (rng.random() < 0.3)
        for _ in range(n):
            j = rng.normal(0, 0.15 * (e - s) + 0.05, 2)
            s1 = s + j[0]
            e1 = max(e + j[1], s1 + 0.01)
            verb = int(r['verb_class']) if rng.random() < .8 else int(
                rng.integers(0, 97))
            noun = int(r['noun_class']) if rng.random() < .8 else int(
                rng.integers(0, 300))
            results.setdefault(r['video_id'], []).append(dict(
                segment=[s1, e1], verb=verb, noun=noun,
                action=f'{verb},{noun}'))
    for vid in list(results) + ['P99_99']:
        for _ in range(5):
            s = float(rng.uniform(0, 600))
            verb, noun = int(rng.integers(0, 97)), int(rng.integers(0, 300))
            results.setdefault(vid, []).append(dict(
                segment=[s, s + float(rng.uniform(0.5, 5))], verb=verb,
                noun=noun, action=f'{verb},{noun}'))
    entries = [e for es in results.values() for e in es]
    for e, score in zip(entries, rng.permutation(len(entries))):
        e['score'] = float((score + rng.random()) / len(entries))
    assert len({e['score'] for e in entries}) == len(entries)  # no ties
    return dict(version='0.2', challenge='action_detection', sls_pt=0,
                sls_tl=0, sls_td=0, results=results)


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_metric_equals_official_port(val_rows, capsys):
    """On the real validation annotations and a submission made from them,
    our metric equals the literal port to 1e-9 (every class, every
    threshold, mAP and average), for verb, noun and action."""
    sub = challenge_results(val_rows)
    csv_path = epic_file('EPIC_100_validation.csv')
    report = []
    for task in ('verb', 'noun', 'action'):
        start = time.perf_counter()
        gt = load_epic_ground_truth(csv_path, task)
        preds = epic_predictions(sub['results'], task)
        res = evaluate_detection(gt, preds, protocol=EPIC)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        official = ref.ANETdetection(val_rows, sub, label=task,
                                     num_nouns=NUM_NOUNS)
        m_ap, avg = official.evaluate()
        t_ref = time.perf_counter() - start
        assert res['tiou_thresholds'] == list(official.tiou_thresholds)
        assert res['num_ignored'] > 0  # labels absent from the gt removed
        per_class = np.array([res['per_class_AP'][str(lb)] for lb in
                              official.activity_index]).T
        assert per_class.shape == official.ap.shape
        gap = max(np.abs(per_class - official.ap).max(),
                  np.abs(np.array(res['mAP']) - m_ap).max(),
                  abs(res['average_mAP'] - avg))
        assert gap <= 1e-9, (task, gap)
        report.append(f'{task}: {len(official.activity_index)} classes, '
                      f'average mAP {avg:.6f}, max |ours - port| '
                      f'{gap:.1e} (ours {t_ours:.2f} s, port {t_ref:.1f} s)')
    with capsys.disabled():
        print('\nEPIC-Kitchens-100 validation, ' +
              f'{sum(map(len, sub["results"].values()))} detections: ' +
              '; '.join(report))


@pytest.fixture
def cli():
    sys.path.insert(0, TOOLS)
    import eval_detection
    yield eval_detection
    sys.path.remove(TOOLS)


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_cli_csv_and_converted_json(cli, val_rows, tmp_path, capsys):
    """``--protocol epic-kitchens-100``: the challenge's CSV and the
    converted JSON give the same numbers (on a few videos)."""
    keep = {'P01_11', 'P01_12', 'P22_01'}
    rows = [r for r in val_rows if r['video_id'] in keep]
    small = tmp_path / 'val.csv'
    with open(small, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    sub = challenge_results(rows, seed=3)
    res_file = tmp_path / 'res.json'
    res_file.write_text(json.dumps(sub))
    sys.path.insert(0, TOOLS_DATA)
    try:
        import convert_epic_kitchens
        written = convert_epic_kitchens.main(
            [str(tmp_path / 'conv'), '--val', str(small)] + sum(
                ([f'--{k.replace("_", "-")}', v]
                 for k, v in epic_files().items()), []))
    finally:
        sys.path.remove(TOOLS_DATA)
    for task in ('verb', 'noun', 'action'):
        out_csv, out_json = tmp_path / 'a.json', tmp_path / 'b.json'
        a = cli.main([str(small), str(res_file), '--protocol', EPIC,
                      '--task', task, '--out', str(out_csv)])
        b = cli.main([written[task], str(res_file), '--protocol', EPIC,
                      '--task', task, '--out', str(out_json)])
        official = ref.ANETdetection(rows, sub, label=task)
        m_ap, avg = official.evaluate()
        for r in (a, b):
            assert abs(r['average_mAP'] - avg) <= 1e-9
            assert np.abs(np.array(r['mAP']) - m_ap).max() <= 1e-9
        saved = json.loads(out_json.read_text())
        assert saved['task'] == task and len(saved['mAP']) == 5
    assert 'task action, subset' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='--task'):
        cli.main([str(small), str(res_file), '--protocol', EPIC])


def test_tal_metric_epic_thresholds():
    metric = TALMetric(protocol=EPIC)
    assert metric.tiou_thresholds == tuple(np.linspace(0.1, 0.5, 5))

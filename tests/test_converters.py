import collections
import json
import os.path as osp

import pytest

from re2tal_mm.datasets.annotations import (class_names_of,
                                            convert_bsn_activitynet,
                                            convert_gtad_thumos,
                                            dump_activitynet_json,
                                            load_activitynet_json)


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_activitynet_counts_and_round_trip(shared_data, tmp_path):
    root = osp.join(shared_data, 'activitynet-1.3')
    db = convert_bsn_activitynet(osp.join(root, 'anet_anno_action.json'),
                                 osp.join(root, 'video_info_new.csv'))
    counts = collections.Counter(v['subset'] for v in db.values())
    assert counts == dict(training=9649, validation=4728, testing=4851)
    assert all(len(k) == 11 for k in db)  # YouTube ids, no 'v_'
    assert len(class_names_of(db)) == 200
    with open(osp.join(root, 'action_name.csv')) as f:
        names = [line.strip() for line in f][1:]
    assert set(class_names_of(db)) == set(n for n in names if n)
    out = str(tmp_path / 'anet.json')
    dump_activitynet_json(db, out)
    val = load_activitynet_json(out, 'validation', class_names=names)
    assert len(val) == 4728
    # segments are kept as in the source, also past the video's end (as the
    # official evaluator reads them); training clips them when it loads
    past = [v for v, info in db.items() for a in info['annotations']
            if a['segment'][1] > info['duration']]
    assert len(past) > 50
    out2 = str(tmp_path / 'anet2.json')
    dump_activitynet_json(load_activitynet_json(out, clip=False), out2)
    assert json.load(open(out2))['database'] == json.load(open(out))[
        'database']
    clipped = load_activitynet_json(out, subset='validation')
    assert all(a['segment'][1] <= info['duration']
               for info in clipped.values() for a in info['annotations'])


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_thumos_counts(shared_data, tmp_path):
    root = osp.join(shared_data, 'thumos-14')
    db = convert_gtad_thumos(
        dict(validation=osp.join(root, 'val_Annotation.csv'),
             test=osp.join(root, 'test_Annotation.csv')),
        osp.join(root, 'thumos14_test_groundtruth.csv'))
    test = {k: v for k, v in db.items() if v['subset'] == 'test'}
    assert len(test) == 210
    assert len(class_names_of(test)) == 20
    assert 'Ambiguous' not in class_names_of(db)
    assert sum(len(v['ambiguous']) for v in test.values()) > 0
    assert test['video_test_0000004']['fps'] == 30.0
    ref = json.load(open(osp.join(root, 'thumos_gt.json')))['database']
    assert set(test) == {k for k, v in ref.items() if v['subset'] == 'test'}
    out = str(tmp_path / 'th.json')
    dump_activitynet_json(db, out)
    assert len(load_activitynet_json(out, 'test')) == 210


def _write(tmp_path, database, name='gt.json'):
    path = str(tmp_path / name)
    dump_activitynet_json(database, path)
    return path


def test_bad_inputs(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"database": {"a": [1, 2,, 3]}}')
    with pytest.raises(ValueError, match=r'bad\.json.*line 1 column'):
        load_activitynet_json(str(bad))
    with pytest.raises(FileNotFoundError, match='nope.json'):
        load_activitynet_json(str(tmp_path / 'nope.json'))
    db = dict(a=dict(subset='training', duration=10.0, annotations=[
        dict(segment=[-1, 4], label='x'), dict(segment=[5, 5], label='x'),
        dict(segment=[8, 12], label='y'), dict(segment=[3, 2], label='y')]))
    path = _write(tmp_path, db)
    with pytest.warns(UserWarning, match='2 segment.*clipped, 2 .*dropped'):
        out = load_activitynet_json(path)
    assert [a['segment'] for a in out['a']['annotations']] == [[0, 4],
                                                               [8, 10]]
    with pytest.raises(ValueError, match="subset 'validation' is empty"):
        load_activitynet_json(path, 'validation')
    with pytest.raises(ValueError, match="label 'y' of video 'a'"):
        load_activitynet_json(path, class_names=['x'])

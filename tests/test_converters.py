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


def _tool(name):
    import importlib.util
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'tools', 'data', name)
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_thumos_tool_creates_folder_and_says_what_it_assumed(
        shared_data, tmp_path, capsys):
    root = osp.join(shared_data, 'thumos-14')
    out = tmp_path / 'data' / 'thumos14' / 'thumos14_gt.json'  # no folder
    _tool('convert_thumos.py').main([
        str(out), '--val', osp.join(root, 'val_Annotation.csv'),
        '--test', osp.join(root, 'test_Annotation.csv'),
        '--groundtruth', osp.join(root, 'thumos14_test_groundtruth.csv')])
    text = capsys.readouterr().out
    db = json.loads(out.read_text())['database']
    assert len(db) == 410
    lines = {line.split(':')[0]: line for line in text.splitlines()}
    # validation videos are never in the groundtruth CSV: all assumed
    assert lines['validation'].startswith('validation: 200 videos;')
    assert ('duration = last segment end and fps = 30 ASSUMED for 200 '
            '(not in thumos14_test_groundtruth.csv') in lines['validation']
    assert 'duration and fps from thumos14_test_groundtruth.csv for 210' \
        in lines['test']
    assert 'ASSUMED' not in lines['test']
    assert 'video_test_0000270, video_test_0001496' in lines['test']
    assert 'only Ambiguous segments' in lines['test']
    # kept as in the source: segments past the end are counted, not clipped
    past = sum(a['segment'][1] > v['duration'] for v in db.values()
               for a in v['annotations'] if v['subset'] == 'test')
    assert past > 0 and f'{past} segment(s) end after' in lines['test']
    # without --groundtruth the test videos are assumed too, and said so
    _tool('convert_thumos.py').main([
        str(tmp_path / 'new' / 'x.json'),
        '--test', osp.join(root, 'test_Annotation.csv')])
    text = capsys.readouterr().out
    assert 'ASSUMED for 210 (no --groundtruth given' in text


def test_activitynet_tool_creates_folder_and_reports_sources(
        shared_data, tmp_path, capsys):
    root = osp.join(shared_data, 'activitynet-1.3')
    out = tmp_path / 'data' / 'activitynet' / 'anet1.3_gt.json'
    _tool('convert_activitynet.py').main([
        osp.join(root, 'anet_anno_action.json'),
        osp.join(root, 'video_info_new.csv'), str(out)])
    text = capsys.readouterr().out
    assert out.exists()
    for subset, n in (('training', 9649), ('validation', 4728),
                      ('testing', 4851)):
        (line, ) = [t for t in text.splitlines()
                    if t.startswith(f'{subset}:')]
        assert line.startswith(f'{subset}: {n} videos; duration from '
                               "anet_anno_action.json 'duration_second'")
        assert "fps from video_info_new.csv 'fps'" in line
    assert '4851 without annotations' in text
    assert 'segment(s) end after their video' in text


def test_paths_written_are_the_paths_the_configs_read():
    """The converters' documented outputs are the configs' annotation
    files (``data_root`` + ``ann_file``): one source of truth."""
    from mmengine.config import Config
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for tool, base in (('convert_thumos.py', 're2tal_thumos14_1024x224.py'),
                       ('convert_activitynet.py',
                        're2tal_anet1.3_768x224.py')):
        cfg = Config.fromfile(osp.join(repo, 'configs', 're2tal', '_base_',
                                       base))
        path = f'{cfg.data_root}/{cfg.ann_file}'
        for loader in ('train_dataloader', 'val_dataloader'):
            assert cfg[loader].dataset.ann_file == cfg.ann_file
            assert 'data_root' not in cfg[loader].dataset
        with open(osp.join(repo, 'tools', 'data', tool)) as f:
            assert path in f.read(), (tool, path)
        with open(osp.join(repo, 'configs', 're2tal', 'README.md')) as f:
            assert path in f.read(), path
        with open(osp.join(repo, 'README.md')) as f:
            assert path in f.read(), path

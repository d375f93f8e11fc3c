"""tools/data/check_dataset.py and tools/extract_features.py on the layout
of each converted dataset (EPIC-Kitchens-100, Charades, MultiTHUMOS,
Ego4D-MQ, HACS, FineAction): small files in the dataset's own layout ->
its converter -> videos named by the dataset's own ids (``P01_11``,
``--0edUL8zmA`` ...) at the durations and fps the files give -> every video
checked ``ok`` over all subsets, and one feature file per video extracted
from the converted JSON."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest

from re2tal_mm.datasets.anet_style import (convert_anet_style_release,
                                           dump_tal_json)

from .conftest import REPO

TEMPLATE = osp.join(REPO, 'configs', 're2tal',
                    're2tal_swin-demo-p244-w877_1xb2-40e_custom-64x64.py')
TINY = osp.join(REPO, 'tests', 'data', 'tiny_recognizer_config.py')
FPS = 10


def load_tool(*parts):
    spec = importlib.util.spec_from_file_location(
        parts[-1][:-3], osp.join(REPO, 'tools', *parts))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def epic(root):
    from re2tal_mm.datasets.epic_kitchens import convert_epic_kitchens
    (root / 'verbs.csv').write_text('id,key\n0,take\n1,put\n')
    (root / 'nouns.csv').write_text('id,key\n0,plate\n1,cup\n')
    (root / 'info.csv').write_text(
        f'video_id,duration,fps\nP01_11,4.0,{FPS}\nP02_101,3.0,{FPS}\n')
    head = ('narration_id,video_id,start_timestamp,stop_timestamp,'
            'start_frame,stop_frame,verb_class,noun_class\n')
    (root / 'train.csv').write_text(
        head + 'P01_11_0,P01_11,00:00:00.50,00:00:02.25,5,22,1,0\n')
    (root / 'val.csv').write_text(
        head + 'P02_101_0,P02_101,00:00:01.00,00:00:02.00,10,20,0,1\n')
    return convert_epic_kitchens(
        dict(train=str(root / 'train.csv'),
             validation=str(root / 'val.csv')),
        verb_classes=str(root / 'verbs.csv'),
        noun_classes=str(root / 'nouns.csv'),
        video_info=str(root / 'info.csv'), task='verb')


def charades(root):
    from re2tal_mm.datasets.multilabel import convert_charades
    head = ('id,subject,scene,quality,relevance,verified,script,objects,'
            'descriptions,actions,length\n')
    (root / 'train.csv').write_text(
        head + '46GP8,HR43,Kitchen,6,7,Yes,s,o,d,'
        '"c092 0.5 3.0;c147 1.0 2.5",4.0\n')
    (root / 'test.csv').write_text(
        head + 'YSKX3,HR44,Bedroom,6,7,Yes,s,o,d,c000 0.0 1.5,3.0\n')
    return convert_charades(dict(training=str(root / 'train.csv'),
                                 testing=str(root / 'test.csv')))


def multithumos(root):
    from re2tal_mm.datasets.multilabel import convert_multithumos
    ann = root / 'annotations'
    ann.mkdir()
    (ann / 'Run.txt').write_text('video_validation_0000051 0.5 4.0\n'
                                 'video_test_0000004 0.2 3.0\n')
    (ann / 'Jump.txt').write_text('video_validation_0000051 1.0 2.0\n')
    return convert_multithumos(str(ann))  # durations: last segment ends


def ego4d(root):
    from re2tal_mm.datasets.ego4d import convert_ego4d_mq
    paths = {}
    for split, subset, clip in (('train', 'train', 'c7d8a2b4-0001'),
                                ('val', 'validation', 'f00e91aa-0002')):
        data = dict(version='v2', videos=[dict(
            video_uid=f'video-{split}', split=split, clips=[dict(
                clip_uid=clip, video_start_sec=100.0, video_end_sec=104.0,
                annotations=[dict(annotator_uid='a', labels=[dict(
                    start_time=0.5, end_time=2.0, label='cut',
                    primary=True)])])])])
        paths[subset] = str(root / f'moments_{split}.json')
        (root / f'moments_{split}.json').write_text(json.dumps(data))
    return convert_ego4d_mq(paths)


def anet_style(name, database):
    def convert(root):
        path = root / f'{name}.json'
        path.write_text(json.dumps(dict(database=database)))
        return convert_anet_style_release(str(path), name)
    return convert


HACS = anet_style('hacs', {
    '--0edUL8zmA': dict(subset='training', duration=4.0, annotations=[
        dict(label='Dodgeball', segment=[0.5, 3.0])]),
    '-1LS3Jg0Zbk': dict(subset='validation', duration=3.0, annotations=[
        dict(label='Archery', segment=[1.0, 2.5])])})
FINEACTION = anet_style('fineaction', {
    'v_00000001': dict(subset='training', duration=4.0, fps=FPS,
                       annotations=[dict(label='take out', label_id=0,
                                         segment=[0.5, 3.0])]),
    'v_00000002': dict(subset='validation', duration=3.0, fps=FPS,
                       annotations=[dict(label='wave', label_id=1,
                                         segment=[1.0, 2.0])])})
LAYOUTS = dict(epic_kitchens_100=epic, charades=charades,
               multithumos=multithumos, ego4d_mq=ego4d, hacs=HACS,
               fineaction=FINEACTION)


@pytest.fixture(scope='module')
def tools():
    return dict(check=load_tool('data', 'check_dataset.py'),
                extract=load_tool('extract_features.py'))


@pytest.mark.parametrize('name', list(LAYOUTS))
def test_check_and_extract_on_layout(name, tools, tmp_path, capsys):
    from re2tal_mm.datasets.synthetic import render_video
    converted = LAYOUTS[name](tmp_path)
    database, classes = converted[:2]
    ann = dump_tal_json(database, str(tmp_path / 'data' / 'gt.json'), name,
                        classes).split(':')[0][len('wrote '):]
    videos = tmp_path / 'data' / 'videos'
    videos.mkdir()
    rng = np.random.default_rng(0)
    for vid, info in database.items():  # the ids as file names
        n = render_video(str(videos / f'{vid}.mp4'), info['duration'], 32,
                         FPS, [], rng)
        assert n == round(info['duration'] * FPS)
    subsets = sorted({info['subset'] for info in database.values()})
    assert len(subsets) == 2, subsets

    # check_dataset: the template config moved onto this dataset, all
    # subsets (subset=None), every video ok
    report = tmp_path / 'report'
    status = tools['check'].main([
        TEMPLATE, '--split', 'train', '--workers', '1', '--no-progress',
        '--out-dir', str(report), '--cfg-options',
        f'data_root={tmp_path / "data"}',
        'train_dataloader.dataset.ann_file=gt.json',
        'train_dataloader.dataset.subset=None'])
    out = capsys.readouterr().out
    assert status == 0, out
    rows = json.load(open(report / 'report.json'))
    rows = rows['videos'] if isinstance(rows, dict) else rows
    assert sorted(r['video_id'] for r in rows) == sorted(database)
    assert {r['status'] for r in rows} == {'ok'}, rows

    # extract_features: one T x C file per video of the JSON
    feats = tmp_path / 'features'
    assert tools['extract'].main([
        TINY, 'none', '--video-dir', str(videos), '--ann-file', ann,
        '--out', str(feats), '--size', '32', '--clip-len', '8', '--stride',
        '8', '--no-progress']) == 0
    for vid, info in database.items():
        arr = np.load(feats / f'{vid}.npy')
        assert arr.ndim == 2 and np.isfinite(arr).all()
        assert arr.shape[0] == pytest.approx(info['duration'] * FPS / 8,
                                             abs=1)

"""HACS Segments v1.1.1 and FineAction: converters on small files written
in their releases' layouts."""
import json
import os.path as osp
import sys

import pytest

from re2tal_mm.datasets import TALDataset
from re2tal_mm.datasets.anet_style import convert_anet_style_release
from tests.conftest import REPO

TOOLS_DATA = osp.join(REPO, 'tools', 'data')

HACS = {'database': {
    '--0edUL8zmA': dict(subset='training', duration=92.18,
                        url='https://www.youtube.com/watch?v=--0edUL8zmA',
                        annotations=[
                            dict(label='Dodgeball', segment=[4.5, 79.0]),
                            dict(label='Archery', segment=[10.0, 10.0])]),
    '-1LS3Jg0Zbk': dict(subset='validation', duration=60.0, annotations=[
        dict(label='Dodgeball', segment=[30.0, 61.5])]),
    '-2ZFXYXoWK0': dict(subset='testing', duration=45.0, annotations=[]),
}}

FINEACTION = {'database': {
    'v_00000001': dict(subset='training', duration=30.03, fps=29.97,
                       frame_num=900, annotations=[
                           dict(label='take out', label_id=5,
                                segment=[1.2, 3.4],
                                **{'segment(frame)': [36, 102]}),
                           dict(label='apply lipstick', label_id=0,
                                segment=[2.0, 9.5],
                                **{'segment(frame)': [60, 285]})]),
    'v_00000002': dict(subset='validation', duration=12.0, fps=25.0,
                       annotations=[dict(label='take out', label_id=5,
                                         segment=[0.0, 2.0])]),
}}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_hacs_layout(tmp_path, capsys):
    db, classes = convert_anet_style_release(
        write(tmp_path, 'HACS_segments_v1.1.1.json', HACS), 'HACS')
    assert classes == ['Archery', 'Dodgeball']  # sorted, as ActivityNet
    assert [v['subset'] for v in db.values()] == ['training', 'validation',
                                                  'testing']
    assert db['--0edUL8zmA']['annotations'] == [
        dict(segment=[4.5, 79.0], label='Dodgeball'),
        dict(segment=[10.0, 10.0], label='Archery')]  # kept as in the file
    assert db['--0edUL8zmA']['duration'] == 92.18
    assert 'fps' not in db['--0edUL8zmA']
    out = capsys.readouterr().out
    assert 'HACS training: read HACS_segments_v1.1.1.json: 1 videos, 2 ' \
        'segments, 2 classes present' in out
    assert '1 segment(s) with end <= start, kept' in out
    assert 'HACS validation' in out and '1 segment(s) end after' in out
    assert 'HACS testing' in out and '1 video(s) without annotations' in out


def test_fineaction_layout_and_tool(tmp_path, capsys):
    src = write(tmp_path, 'annotations_gt.json', FINEACTION)
    db, classes = convert_anet_style_release(src, 'FineAction')
    assert classes == ['apply lipstick', 'take out']  # by label_id
    v = db['v_00000001']
    assert (v['fps'], v['duration']) == (29.97, 30.03)
    assert v['annotations'][0] == dict(segment=[1.2, 3.4], label='take out',
                                       label_id=5)
    sys.path.insert(0, TOOLS_DATA)
    try:
        import convert_anet_style as tool
        out = tool.main(['fineaction', src, str(tmp_path / 'fa' / 'g.json')])
    finally:
        sys.path.remove(TOOLS_DATA)
    assert json.load(open(out))['classes'] == classes
    ds = TALDataset(out, pipeline=[], subset='validation', lazy_init=True)
    assert list(ds.classes) == classes
    bad = json.loads(json.dumps(FINEACTION))
    bad['database']['v_00000002']['annotations'][0]['label_id'] = 0
    with pytest.raises(ValueError, match='label_id 0'):
        convert_anet_style_release(write(tmp_path, 'bad.json', bad), 'FA')
    del bad['database']['v_00000002']['duration']
    with pytest.raises(KeyError, match="v_00000002.*duration"):
        convert_anet_style_release(write(tmp_path, 'bad.json', bad), 'FA')

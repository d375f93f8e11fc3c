"""OpenTAD reference parity: the tools and the checkpoint converter.

Each model kind has its own test file (``test_opentad_<kind>.py``) with the
fixture's entries one by one; here every fixture of
``../shared/reference/opentad`` goes through ``tools/check_opentad_parity.py``
as a user runs it, and an OpenTAD TAL checkpoint through the converter.
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from re2tal_mm.apis.opentad.keys import UnplacedTensorError, map_keys
from re2tal_mm.apis.opentad.parity import EXACT, LOSS, compare, not_produced

from .conftest import OPENTAD_FIXTURES, REPO, opentad_fixture, shared_path

TOOL = osp.join(REPO, 'tools', 'check_opentad_parity.py')
FIXTURES = ['re2tal_swin.pth', 're2tal_slowfast.pth', 'adatad_vit.pth',
            'actionformer.pth', 'tridet.pth']


def test_compare_finds_each_kind_of_difference():
    expected = dict(
        input=torch.zeros(2), out=[torch.ones(3, dtype=torch.float64)],
        gt=dict(a=dict(cls_loss=torch.tensor(2.5, dtype=torch.float32),
                       num_pos=15)),
        post_processing=dict(results=dict(v=[
            dict(segment=[0.1, 0.5], label='a', score=0.5),
            dict(segment=[0.2, 0.6], label='b', score=0.4)])))
    same = dict(out=[torch.ones(3, dtype=torch.float64)],
                gt=dict(a=dict(cls_loss=torch.tensor(2.5 + 1e-6,
                                                     dtype=torch.float64),
                               num_pos=15)),
                post_processing=dict(results=dict(v=[
                    dict(segment=[0.1, 0.51], label='a', score=0.5001),
                    dict(segment=[0.2, 0.6], label='b', score=0.4)])))
    rows = compare(expected, same)
    assert rows and all(r.ok for r in rows), rows
    assert [r.tol for r in rows[:2]] == [EXACT, LOSS]
    assert not_produced(expected, same) == []
    assert not_produced(expected, dict(out=same['out'])) == [
        'gt', 'post_processing']

    def fails(**change):
        ours = dict(same, **change)
        return [r.path for r in compare(expected, ours) if not r.ok]

    assert fails(out=[torch.ones(3, dtype=torch.float64) + 1e-9]) == [
        'out[0]']
    assert fails(out=[torch.ones(4, dtype=torch.float64)]) == ['out[0]']
    assert fails(gt=dict(a=dict(cls_loss=torch.tensor(2.5 + 1e-4),
                                num_pos=15))) == ['gt.a.cls_loss']
    assert fails(gt=dict(a=dict(cls_loss=torch.tensor(2.5),
                                num_pos=14))) == ['gt.a.num_pos']
    swapped = dict(results=dict(v=same['post_processing']['results']['v']
                                [::-1]))
    assert 'post_processing.results.v.segment' in fails(
        post_processing=swapped)
    assert fails(extra=torch.zeros(1)) == ['extra']


def test_map_keys_names_an_unplaced_tensor():
    sd = {'a.inv_block.Fm.w': 1, 'a.b': 2, 'fc_norm.weight': 3}
    ours, dropped = map_keys(sd, [(r'(.*)\.inv_block\.Fm\.(.*)', r'\1.\2'),
                                  (r'a\.b', 'a.b')], drop=[r'fc_norm\..*'])
    assert ours == {'a.w': 1, 'a.b': 2} and dropped == ['fc_norm.weight']
    with pytest.raises(UnplacedTensorError, match="'a.b' has no place"):
        map_keys(sd, [(r'(.*)\.inv_block\.Fm\.(.*)', r'\1.\2')],
                 drop=[r'fc_norm\..*'])


@pytest.mark.parametrize('name', FIXTURES)
def test_check_opentad_parity_tool(name, tmp_path):
    """The tool as a user (and the before-stop check) runs it: our outputs
    written under the fixture's entry names, every one within tolerance."""
    fixture = shared_path(osp.join(OPENTAD_FIXTURES, name))
    out = tmp_path / 'ours.pth'
    res = subprocess.run(
        [sys.executable, TOOL, fixture, '--out', str(out), '--compare'],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith('OK: ') and ', 0 past tolerance' in last, last
    ours = torch.load(out, weights_only=True)
    assert ours and not (set(ours) - set(torch.load(
        fixture, weights_only=True)))


def test_check_opentad_parity_tool_fails_past_tolerance(tmp_path,
                                                        monkeypatch):
    """The exit status is the verdict: a perturbed weight fails."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('check_opentad', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    fixture = opentad_fixture('re2tal_swin.pth')
    key = next(k for k in fixture['state_dict'] if k.endswith('qkv.weight'))
    fixture['state_dict'][key] = fixture['state_dict'][key] * (1 + 1e-6)
    path = tmp_path / 'perturbed.pth'
    torch.save(fixture, path)
    assert tool.main([str(path), '--compare']) == 1
    assert tool.main([str(path)]) == 0  # without --compare: outputs only

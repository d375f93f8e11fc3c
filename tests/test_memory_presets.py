"""Every shipped config names its memory preset (issue 26).

A rewired config says in ``model.rewire`` which memory preset it trains
with (``memory=`` one of :data:`re2tal_mm.rewiring.base.MEMORY`), so that
what a user runs is what ``configs/re2tal/README.md`` measured; its model,
built from the config (on the ``meta`` device: no weights are allocated),
is rewired with that preset. A config that is not rewired states why: it has
no backbone (feature mode) or its backbone checkpoints its blocks
(``with_cp=True``, the AdaTAD recipes). Every video config has a row in the
README's memory table naming the same preset.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from re2tal_mm.rewiring import rewiring_spec
from re2tal_mm.rewiring.base import MEMORY

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', 're2tal', '*.py')) +
    glob.glob(osp.join(REPO, 'configs', 're2tal', 'datasets', '*.py')))
README = osp.join(REPO, 'configs', 're2tal', 'README.md')


def ids(paths):
    return [osp.relpath(p, osp.join(REPO, 'configs', 're2tal'))
            for p in paths]


def not_rewired_reason(model_cfg) -> str:
    """Why a config without ``rewire`` may ship without a preset, or ''."""
    backbone = model_cfg.get('backbone')
    if backbone is None:
        return 'feature mode: no backbone'
    if backbone.get('with_cp') is True:
        return 'checkpointed blocks (with_cp=True)'
    return ''


def memory_table_rows() -> dict:
    """``config file name -> preset`` from the README's memory table (the
    section after the ``<!-- memory presets -->`` marker)."""
    with open(README) as f:
        text = f.read()
    assert '<!-- memory presets -->' in text, 'memory table marker missing'
    rows = {}
    for line in text.split('<!-- memory presets -->')[1].splitlines():
        cells = [c.strip().strip('`') for c in line.strip('|').split('|')]
        if line.startswith('|') and cells[0].endswith('.py'):
            rows[cells[0]] = cells[1].strip('`')
        elif rows and not line.startswith('|'):
            break
    return rows


def test_configs_found():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize('path', CONFIGS, ids=ids(CONFIGS))
def test_config_names_a_memory_preset(path):
    model_cfg = Config.fromfile(path).model
    spec = model_cfg.get('rewire')
    if not spec:
        reason = not_rewired_reason(model_cfg)
        assert reason, (f'{path}: model.rewire is None but the backbone is '
                        'neither absent nor checkpointed (with_cp=True): '
                        "rewire it with a memory preset or say why not")
        return
    assert 'memory' in spec, (
        f'{path}: model.rewire={dict(spec)} names no memory preset; add '
        f'memory=<one of {MEMORY}> (measured: configs/re2tal/README.md)')
    assert spec['memory'] in MEMORY, (path, spec['memory'])


VIDEO_CONFIGS = [p for p in CONFIGS
                 if Config.fromfile(p).model.get('backbone') is not None]


@pytest.mark.parametrize('path', VIDEO_CONFIGS, ids=ids(VIDEO_CONFIGS))
def test_built_model_uses_the_preset(path, monkeypatch):
    """The model built from the config is rewired with its preset."""
    from mmengine.registry import init_default_scope

    import re2tal_mm  # noqa: F401

    from mmaction.registry import MODELS
    cfg = Config.fromfile(path)
    init_default_scope('mmaction')
    linspace = torch.linspace

    def host_linspace(*args, **kwargs):  # drop path rates are read back
        kwargs.setdefault('device', 'cpu')
        return linspace(*args, **kwargs)

    monkeypatch.setattr(torch, 'linspace', host_linspace)
    with torch.device('meta'):  # no weights allocated (ViT-g: 1B)
        model = MODELS.build(cfg.model)
    spec = cfg.model.get('rewire')
    built = rewiring_spec(model.backbone)
    if not spec:
        assert built is None
        return
    # rewiring_spec leaves out the default preset ('balanced')
    assert built.get('memory', 'balanced') == spec.get('memory'), path
    assert built['mode'] == spec.get('mode', 'reversible')


def test_readme_memory_table_lists_every_video_config():
    rows = memory_table_rows()
    for path in VIDEO_CONFIGS:
        name = osp.basename(path)
        assert name in rows, f'{name}: no row in the README memory table'
        spec = Config.fromfile(path).model.get('rewire')
        want = spec['memory'] if spec else 'none'
        assert rows[name] == want, (name, rows[name], want)

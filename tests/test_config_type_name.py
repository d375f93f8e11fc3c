"""config_type_name (rewiring/spec.py): the one reading of a config's
``type``, for the rewiring spec, the apis and the tools."""
from mmengine.config import Config

from re2tal_mm.datasets.transforms import TALVideoInit
from re2tal_mm.rewiring.spec import config_type_name, rewiring_of_config


def test_config_type_name():
    assert config_type_name(dict(type='TALVideoInit')) == 'TALVideoInit'
    assert config_type_name(dict(type='mmaction.TALVideoInit')) == \
        'TALVideoInit'
    assert config_type_name(dict(type=TALVideoInit)) == 'TALVideoInit'
    assert config_type_name(TALVideoInit()) == 'TALVideoInit'  # built
    assert config_type_name('mmaction.Recognizer3D') == 'Recognizer3D'
    assert config_type_name(dict(other=1)) == ''
    assert config_type_name(dict(type=None)) == ''


def test_rewiring_of_config_reads_any_hook_type():
    for kind in ('RewireBackboneHook', 'mmaction.RewireBackboneHook'):
        cfg = Config(dict(model=dict(type='TemporalActionLocalizer'),
                          custom_hooks=[dict(type='EMAHook'),
                                        dict(type=kind, mode='autograd')]))
        assert rewiring_of_config(cfg) == (
            dict(mode='autograd'), 'the RewireBackboneHook of the config')
    assert rewiring_of_config(Config(dict(model=dict()))) == (None, '')

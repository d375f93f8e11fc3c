"""rewire / unwire / is_rewired on whole models and the ResNet3d adapter."""
import torch

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.engine.rewire_hook import format_summary
from re2tal_mm.rewiring import (is_rewired, rewire, rewired_stages,
                                rewiring_summary, unwire)

from mmaction.registry import MODELS

torch.set_num_threads(1)


def tiny_recognizer():
    from mmengine.registry import init_default_scope
    init_default_scope('mmaction')
    cfg = dict(
        type='Recognizer3D',
        backbone=dict(type='ResNet3d', depth=50, pretrained=None,
                      pretrained2d=False, base_channels=4, num_stages=2,
                      stage_blocks=(3, 4), out_indices=(1, ),
                      inflate=((1, 1, 1), (1, 1, 1, 1)),
                      conv1_kernel=(1, 3, 3), spatial_strides=(1, 2),
                      temporal_strides=(1, 1), dilations=(1, 1)),
        cls_head=dict(type='I3DHead', num_classes=2, in_channels=32))
    return MODELS.build(cfg)


def test_rewire_recognizer_in_place_and_summary():
    model = tiny_recognizer()
    assert rewire(model) is model
    assert is_rewired(model)
    stages = rewired_stages(model)
    assert [s.num_functions for s in stages] == [2, 3]
    rows = rewiring_summary(model)
    assert sum(r['reversible_blocks'] for r in rows) == 5
    assert '5/7 blocks (71.4%) reversible in 2 stages' in format_summary(rows)
    unwire(model)
    assert not is_rewired(model)
    assert all('forward' not in m.__dict__ for m in model.modules())


def test_resnet_rewired_function_differs_but_unwire_restores():
    torch.manual_seed(0)
    model = tiny_recognizer().backbone
    model.eval()
    x = torch.randn(1, 3, 2, 16, 16)
    with torch.no_grad():
        ref = model(x)
        rewire(model, 'autograd')
        rewired = model(x)
        rewire(model, 'reversible')
        assert torch.equal(model(x), rewired)
        unwire(model)
        assert torch.equal(model(x), ref)
    # the ReLU moved onto the branch: same parameters, a slightly new function
    assert not torch.equal(rewired, ref)

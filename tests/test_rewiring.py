"""rewire / unwire / is_rewired on whole models and the ResNet3d adapter."""
import torch
from torch import nn

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.rewiring import (is_rewired, rewire, rewired_stages,
                                rewiring_report, rewiring_summary, unwire)
from re2tal_mm.rewiring.rewire import format_summary

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


def test_report_of_a_resnet3d_recognizer():
    """Stages, nothing frozen, the stem and each first block outside the
    chains (checkpointed unless ``memory='fast'``), named in the model."""
    model = tiny_recognizer()
    assert rewiring_report(model) is None
    rewire(model)
    report = rewiring_report(model)
    assert report.spec == dict(mode='reversible')
    assert [(r['stage'], r['functions'], r['reversible_blocks'],
             r['blocks']) for r in report.stages] == [
        ('backbone.layer1', 2, 2, 3), ('backbone.layer2', 3, 3, 4)]
    assert report.frozen == ()
    assert report.non_reversible == (
        ('backbone.conv1', 'kept'), ('backbone.maxpool', 'kept'),
        ('backbone.layer1.0', 'checkpoint'),
        ('backbone.layer2.0', 'checkpoint'))
    assert '5/7 blocks (71.4%) reversible in 2 stages' in report.format()
    rewire(model, memory='fast')
    assert {p for _, p in rewiring_report(model).non_reversible} == {'kept'}
    # 'floor': the stem (conv1 and maxpool) checkpointed as one function
    rewire(model, memory='floor')
    assert {p for _, p in rewiring_report(model).non_reversible} == {
        'checkpoint'}
    # named in the module asked: the backbone alone
    assert [r['stage'] for r in rewiring_report(model.backbone).stages] == [
        'layer1', 'layer2']
    unwire(model)
    assert rewiring_report(model) is None


def test_report_of_a_swin_lists_what_rewire_froze():
    from .test_pieces import tiny_swin
    holder = nn.Module()
    holder.backbone = tiny_swin()
    rewire(holder.backbone, freeze_patch_embed=True, merging='checkpoint')
    report = rewiring_report(holder)
    assert [r['stage'] for r in report.stages] == ['backbone.layers.0',
                                                   'backbone.layers.1']
    embed = tuple(sorted(f'backbone.patch_embed.{n}' for n, _ in
                         holder.backbone.patch_embed.named_parameters()))
    assert len(embed) == 4 and report.frozen == embed
    assert report.non_reversible == (
        ('backbone.patch_embed', 'frozen'),
        ('backbone.layers.0.downsample', 'checkpoint'))
    text = report.format()
    assert 'frozen by the rewiring: 4 parameters (backbone.patch_embed.' in \
        text
    assert 'backbone.layers.0.downsample (checkpoint)' in text
    # rewired again without the option: the parameters train, none frozen
    rewire(holder.backbone, merging='recompute')
    report = rewiring_report(holder)
    assert report.frozen == ()
    assert all(p.requires_grad for p in holder.parameters())
    assert dict(report.non_reversible) == {
        'backbone.patch_embed': 'kept',
        'backbone.layers.0.downsample': 'recompute'}
    # a parameter frozen before rewire is not the rewiring's doing
    holder.backbone.patch_embed.requires_grad_(False)
    rewire(holder.backbone, freeze_patch_embed=True)
    assert rewiring_report(holder).frozen == ()


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

"""Branches with BatchNorm in training mode, recomputed layer by layer in
slices of output channels (``rewiring.channel_pieces``): each slice is the
layer's own forward, exact in float64, and ``memory='floor'`` uses them for
ResNet-family models that train their BatchNorm."""
import copy

import pytest
import torch
from mmcv.cnn import ConvModule
from torch import nn

import re2tal_mm  # noqa: F401  (must precede mmaction.models)
from re2tal_mm.reversible import relative_error
from re2tal_mm.rewiring import channel_pieces, rewire
from re2tal_mm.rewiring.channel_pieces import (channel_slice, segments,
                                               sliced_parts)

from mmaction.models.backbones import X3D, ResNet, ResNet3d, ResNetTSM
from mmaction.models.backbones.resnet_tsm import TemporalShift
from .test_checkpoint_pieces import step

torch.set_num_threads(1)


def conv_module(groups=1, channels=(6, 6), act=True, shift=False):
    torch.manual_seed(0)
    module = ConvModule(
        *channels, 3, padding=1, groups=groups,
        conv_cfg=dict(type='Conv2d' if shift else 'Conv3d'),
        norm_cfg=dict(type='BN2d' if shift else 'BN3d', momentum=0.3),
        act_cfg=dict(type='ReLU') if act else None).double()
    module.norm.running_mean.uniform_(-1, 1)
    module.norm.weight.data.uniform_(0.5, 1.5)
    if shift:
        module.conv = TemporalShift(module.conv, num_segments=2, shift_div=3)
    return module.train()


@pytest.mark.parametrize('kind', ['dense', 'depthwise', 'shifted', 'no act'])
def test_slices_are_the_layer_forward(kind):
    """Output channel slices, concatenated, are the module's own output,
    and their running statistics its update (float64)."""
    depthwise = kind == 'depthwise'
    module = conv_module(
        groups=6 if depthwise else 1, channels=(6, 6 if depthwise else 9),
        act=kind != 'no act', shift=kind == 'shifted')
    x = torch.randn((4, 6, 5, 5) if kind == 'shifted' else (2, 6, 4, 5, 5),
                    dtype=torch.float64)
    ref = copy.deepcopy(module)
    want = ref(x)
    parts = sliced_parts(module)
    assert parts is not None and parts[2] == depthwise
    pieces = channel_pieces.channel_pieces([module], parts, dict(pieces=3), x)
    assert len(pieces) == 3
    out = torch.cat([p.fn(x[p.read]) for p in pieces], dim=1)
    assert relative_error(out, want) < 1e-14
    for name in ('running_mean', 'running_var'):
        assert relative_error(getattr(module.norm, name),
                              getattr(ref.norm, name)) < 1e-14
    # the slice swap is undone: the module computes all channels again
    assert parts[0].weight.shape[0] == (6 if depthwise else 9)
    assert parts[0].groups == (6 if depthwise else 1)
    assert module(x).shape == want.shape


def test_dense_layers_not_widening_are_one_piece():
    """Every slice of a dense layer computes the whole input gradient:
    sliced only when its output is larger than its input."""
    x = torch.randn(2, 6, 4, 5, 5, dtype=torch.float64)
    for channels, stride, n in [((6, 6), 1, 1), ((6, 9), 1, 3),
                                ((6, 12), 2, 1)]:
        module = conv_module(channels=channels)
        module.conv.stride = (stride, ) * 3
        pieces = channel_pieces.channel_pieces(
            [module], sliced_parts(module), dict(pieces=3), x)
        assert len(pieces) == n


def test_layers_that_mix_channels_are_whole():
    grouped = conv_module(groups=2)
    assert sliced_parts(grouped) is None
    # a depthwise convolution behind a wrapper (which may move channels)
    assert sliced_parts(conv_module(groups=6, shift=True)) is None
    norm_first = ConvModule(4, 4, 1, norm_cfg=dict(type='BN'),
                            order=('norm', 'conv', 'act'))
    assert sliced_parts(norm_first) is None
    assert sliced_parts(nn.Linear(3, 3)) is None
    # pointwise layers join the layer before them; none may come first
    assert segments([nn.ReLU()]) is None
    relu = nn.ReLU()
    groups = segments([conv_module(), relu, grouped])
    assert [len(g) for g, _ in groups] == [2, 1]
    assert groups[0][1] is not None and groups[1][1] is None


BOTTLENECK = {'layer1.0.conv3', 'layer1.0.downsample', 'layer2.1.conv3'}
# name: (builder, input shape, layers expected in slices: those widening
# their input, first blocks (and their shortcut) and chained blocks)
TRAIN_BN_CASES = {
    'x3d': (lambda: X3D(gamma_w=0.5, gamma_b=2.25, num_stages=2,
                        spatial_strides=(2, 2), gamma_d=2, se_style='half'),
            (2, 3, 4, 32, 32),
            {'layer1.0.conv1', 'layer1.0.conv2', 'layer2.1.conv1'}),
    'resnet3d': (lambda: ResNet3d(50, None, pretrained2d=False, num_stages=2,
                                  out_indices=(1, ), spatial_strides=(1, 2),
                                  temporal_strides=(1, 1), dilations=(1, 1),
                                  inflate=(1, 1)), (1, 3, 4, 32, 32),
                 BOTTLENECK),
    'tsm': (lambda: ResNetTSM(50, num_segments=2, shift_div=4,
                              pretrained=None), (4, 3, 32, 32), BOTTLENECK),
    'resnet': (lambda: ResNet(50, pretrained=None, num_stages=2,
                              out_indices=(0, 1), strides=(1, 2),
                              dilations=(1, 1)), (2, 3, 32, 32), BOTTLENECK),
}


@pytest.mark.parametrize('name', list(TRAIN_BN_CASES))
@pytest.mark.parametrize('first_block', ['mmaction', 'opentad'])
def test_floor_with_batch_statistics_is_exact(name, first_block,
                                              monkeypatch):
    """``memory='floor'`` on a backbone training its BatchNorm: gradients
    and running statistics of ``'autograd'`` (float64, 1e-10), the chained
    branches and the first blocks recomputed in channel slices."""
    build, shape, expected = TRAIN_BN_CASES[name]
    torch.manual_seed(0)
    ref = build().double()
    ref.train()
    x = torch.randn(shape, dtype=torch.float64)
    floor = copy.deepcopy(ref)
    rewire(ref, 'autograd', first_block=first_block)
    rewire(floor, 'reversible', memory='floor', pieces=3,
           first_block=first_block)
    sliced = []

    def counted(layers, parts, start, stop, t):
        sliced.append(layers[0])
        return channel_slice(layers, parts, start, stop, t)
    monkeypatch.setattr(channel_pieces, 'channel_slice', counted)
    gx_ref, g_ref = step(ref, x)
    gx, g = step(floor, x)
    assert relative_error(gx, gx_ref) < 1e-10
    scale = max(t.norm() for t in g_ref.values())
    assert max((g[n] - g_ref[n]).norm() / max(g_ref[n].norm(), 1e-6 * scale)
               for n in g_ref) < 1e-10
    for (n, a), (_, b) in zip(ref.named_buffers(), floor.named_buffers()):
        assert torch.equal(a, b) if a.dtype == torch.int64 else \
            (a - b).abs().max() < 1e-12, n
    # slices of the first blocks (their shortcut too) and of the chains
    names = {m: n for n, m in floor.named_modules()}
    hit = {names[m] for m in sliced}
    assert expected <= hit

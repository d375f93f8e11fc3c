# The unmodified MMAction2 Video Swin-T Kinetics-400 config, plus the plugin
# and the rewiring hooks (rewire, memory probe, inversion monitor). Only what
# a CPU test needs is overridden: no pretrained download, 2 classes, a tiny
# synthetic dataset (`TinySyntheticVideos`, registered by
# tests/test_engine.py), 2 iterations, plain fp32 optimizer wrapper, no
# validation and no checkpoint.
_base_ = 'mmaction::recognition/swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py'  # noqa: E501
custom_imports = dict(imports=['re2tal_mm'], allow_failed_imports=False)
default_scope = 'mmaction'

model = dict(
    backbone=dict(pretrained=None, pretrained2d=False),
    cls_head=dict(num_classes=2))

custom_hooks = [
    dict(type='RewireBackboneHook', mode='reversible'),
    dict(type='ReversibleMemoryProbeHook'),
    dict(type='InversionMonitorHook', interval=1)
]

train_dataloader = dict(
    _delete_=True, batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='TinySyntheticVideos', num_samples=4,
                 shape=(1, 3, 4, 32, 32), num_classes=2))
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2,
                 val_interval=100)
optim_wrapper = dict(type='OptimWrapper')
param_scheduler = []
default_hooks = dict(checkpoint=None, logger=dict(interval=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))

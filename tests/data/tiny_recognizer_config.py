# A tiny MMAction2 config run by `mim train mmaction2` in tests/test_mim.py.
# The test writes a few small mp4 files and passes their folder and list file
# with --cfg-options; everything else is a stock MMAction2 component.
custom_imports = dict(imports=['re2tal_mm'], allow_failed_imports=False)
default_scope = 'mmaction'

model = dict(
    type='Recognizer3D',
    backbone=dict(type='ResNet3d', depth=18, pretrained=None,
                  pretrained2d=False, base_channels=8, num_stages=2,
                  out_indices=(1, ),
                  inflate=((1, 1), (1, 1)), conv1_kernel=(1, 3, 3),
                  with_pool1=False, spatial_strides=(1, 2),
                  temporal_strides=(1, 1), dilations=(1, 1)),
    cls_head=dict(type='I3DHead', num_classes=2, in_channels=16,
                  average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[127.5] * 3, std=[127.5] * 3,
                           format_shape='NCTHW'))

data_root = ''
ann_file = ''
train_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=4, frame_interval=1, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(32, 32), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='VideoDataset', ann_file=ann_file,
                 data_prefix=dict(video=data_root), pipeline=train_pipeline))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
val_cfg = None
val_dataloader = None
val_evaluator = None
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1),
    logger=dict(type='LoggerHook', interval=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
launcher = 'none'

# Runtime shared by the Re2TAL recipes: the plugin, the data_root runner,
# the DDP wrapper, the rewiring record, EMA, logging and checkpointing (one
# process per GPU, NCCL). The reversible rewiring itself is in each recipe's
# model (model.rewire).
custom_imports = dict(imports=['re2tal_mm'], allow_failed_imports=False)
default_scope = 'mmaction'
# gives the top-level `data_root` to every TALDataset after --cfg-options,
# so `--cfg-options data_root=DIR` moves all the data
runner_type = 'DataRootRunner'
# distributed (--launcher pytorch): drops device_ids for a model on the CPU
# (gloo); the model is already rewired at construction (model.rewire), so
# the wrapper only wraps (rewire_mode=None: model.rewire=None stays plain)
model_wrapper_cfg = dict(type='ReversibleDistributedDataParallel',
                         rewire_mode=None)

custom_hooks = [
    # record the model's rewiring in checkpoints; warn when a checkpoint is
    # loaded into a model that computes another function
    dict(type='RewiringMetaHook'),
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.001,
         priority='ABOVE_NORMAL'),
]
default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3,
                    save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ActionVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
resume = False
randomness = dict(seed=0)
# 1 GPU x 2 videos; scale lr linearly if you change the total batch size
auto_scale_lr = dict(enable=False, base_batch_size=2)

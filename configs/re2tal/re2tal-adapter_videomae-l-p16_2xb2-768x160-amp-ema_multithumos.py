# Reversible temporal adapters on MultiTHUMOS, end to end: OpenTAD's AdaTAD
# MultiTHUMOS recipe (configs/adatad/multi_thumos/
# e2e_multithumos_videomae_l_768x1_160_adapter.py: 768 frames a window,
# every 4th frame of the THUMOS-14 videos, at 160x160, 2 GPUs x 2 videos)
# with its VideoMAE ViT-L/16 (Kinetics-400) frozen, a temporal adapter after
# each of the 24 blocks, and the block stack rewired to one reversible stage
# with the lowest-memory preset (memory='floor') instead of AdaTAD's
# checkpointing. Dense, multi-label, overlapping segments (65 classes);
# global attention, encoder arch (3, 0, 5), adapters at lr 4e-4, 5 warm-up
# epochs of a 100-epoch cosine stopped at 80, Soft-NMS sigma 0.5 with
# voting 0.7. Published (AdaTAD, not reproduced here, not rewired): average
# mAP 0.1:0.9 45.15. Scored as OpenTAD scores it (TALMetric protocol
# 'multithumos': ActivityNet's rules at tIoU 0.1:0.1:0.9).
# Annotations: tools/data/convert_multithumos.py (the THUMOS-14 subsets
# 'validation' = training, 'test' = evaluation; multithumos.json); the
# THUMOS-14 videos in <data_root>/videos/.
_base_ = ['./re2tal-adapter_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py']

# a VideoMAE ViT-L/16 Kinetics-400 recognizer checkpoint (MMAction2 model
# zoo, vit-large-p16_videomae-k400-pre_16x4x1_kinetics-400_*.pth): a path
# you fill in, nothing downloaded
load_from = None

data_root = 'data/multithumos'
ann_file = 'multithumos.json'
num_classes = 65
feat_len = 768
max_epochs = 80  # OpenTAD's end_epoch (its cosine runs to 100)
warmup_epochs = 5

model = dict(
    rewire=dict(_delete_=True, mode='reversible', memory='floor'),
    backbone=dict(embed_dims=1024, depth=24, num_heads=16, with_cp=False),
    neck=dict(in_channels=1024, arch=(3, 0, 5), window_size=-1),
    head=dict(num_classes=num_classes),
    post_processor=dict(pre_nms_topk=8000))

train_dataloader = dict(dataset=dict(ann_file=ann_file, classes=None,
                                     ignore_ambiguous=False))
val_dataloader = dict(dataset=dict(ann_file=ann_file, classes=None,
                                   ignore_ambiguous=False))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True, type='TALMetric', subset='test', protocol='multithumos',
    nms=dict(method='soft', sigma=0.5, min_score=0., max_num=8000,
             voting_thresh=0.7),
    max_per_video=8000)
test_evaluator = val_evaluator

# OpenTAD evaluates every 2 epochs from epoch 49 on
train_cfg = dict(max_epochs=max_epochs, val_begin=49, val_interval=2)
# detector lr 1e-4; of the backbone only the adapters train, at 4e-4
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=4.0, decay_mult=1.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=100 - warmup_epochs, eta_min=1e-8,
         convert_to_iter_based=True),
]

# ActionFormer on EPIC-Kitchens-100 SlowFast features, noun task: the verb
# config with the noun annotations and 300 classes (OpenTAD's
# configs/actionformer/epic_kitchens_slowfast_noun.py). Published
# (ActionFormer): average mAP 0.1:0.5 noun 21.9; not reproduced here.
_base_ = ['./actionformer_slowfast-feature_epic-kitchens-100-verb.py']

task = 'noun'
ann_file = f'epic_kitchens_100_{task}.json'
num_classes = 300
model = dict(head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(ann_file=ann_file))
val_dataloader = dict(dataset=dict(ann_file=ann_file))
test_dataloader = val_dataloader

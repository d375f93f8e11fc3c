# Your own videos (docs/custom_dataset.md): the demo model (a small Video Swin
# rewired to reversible, 64 frames at 5 fps a window, 64x64 frames) on the
# JSON written by tools/data/convert_csv.py from a CSV of
# `video,start,end,label` and a folder of videos. Set `data_root` (or
# `--cfg-options data_root=DIR`) and `num_classes` (the converter prints it);
# the class names are read from the JSON. For real footage raise the frame
# size (Resize), the model (e.g. the Swin-T recipe) and, for long actions,
# the window (num_steps x 1/target_fps s should exceed the longest action).
_base_ = ['./re2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py']

data_root = 'data/custom'  # <data_root>/annotations.json, <data_root>/videos/
num_classes = 4  # as printed by tools/data/convert_csv.py
suffix = '.mp4'  # the videos' extension (printed when not .mp4)

model = dict(head=dict(num_classes=num_classes))
_dataset = dict(ann_file='annotations.json', classes=None, suffix=suffix,
                data_prefix=dict(video='videos'))
train_dataloader = dict(dataset=_dataset)
val_dataloader = dict(dataset=_dataset)
test_dataloader = val_dataloader

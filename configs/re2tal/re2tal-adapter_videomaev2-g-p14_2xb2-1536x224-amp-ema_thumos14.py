# Reversible temporal adapters on THUMOS-14 at AdaTAD's largest setting: the
# recipe of adatad_videomaev2-g-p14_2xb2-1536x224-amp-ema_thumos14.py
# (VideoMAE V2-g/14 frozen, temporal adapters in blocks 20-39, 1536 frames
# every 2nd frame, 224x224) with the block stack rewired to one reversible
# stage with piecewise recompute (memory='floor': SDPA head groups, token
# slices) instead of checkpointed. Rewiring changes the network's function:
# an AdaTAD checkpoint runs with the adatad_* config, not this one.
_base_ = ['./adatad_videomaev2-g-p14_2xb2-1536x224-amp-ema_thumos14.py']

model = dict(
    rewire=dict(_delete_=True, mode='reversible', memory='floor'),
    # nothing to checkpoint in a reversible stage
    backbone=dict(with_cp=False))

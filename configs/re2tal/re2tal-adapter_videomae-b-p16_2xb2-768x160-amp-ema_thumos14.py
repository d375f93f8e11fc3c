# Reversible temporal adapters on THUMOS-14: the AdaTAD recipe of
# adatad_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py (VideoMAE ViT-B/16
# frozen, a temporal adapter after every block, 768 frames every 4th frame,
# 160x160) with the block stack rewired to one reversible stage instead of
# checkpointed: attention, MLP and temporal adapter are three residual
# functions per block (and a no-op one keeping the streams' roles, so zero
# adapters change nothing). Rewiring changes the network's function: an
# AdaTAD checkpoint runs with the adatad_* config, not this one.
_base_ = ['./adatad_videomae-b-p16_2xb2-768x160-amp-ema_thumos14.py']

model = dict(
    # piecewise recompute (SDPA head groups, token slices): the lowest
    # memory (configs/re2tal/README.md memory table)
    rewire=dict(_delete_=True, mode='reversible', memory='floor'),
    # nothing to checkpoint in a reversible stage
    backbone=dict(with_cp=False))

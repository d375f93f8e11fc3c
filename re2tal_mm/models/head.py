"""Anchor-free localization head (ActionFormer style)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import Scale
from mmengine.model import BaseModule

from mmaction.registry import MODELS
from .neck import ChannelLayerNorm

INF = 1e8


@MODELS.register_module()
class ActionFormerHead(BaseModule):
    """Shared conv towers predicting, at each position of each level, class
    logits and the distances to the action's start and end.

    Distances are predicted in units of the level's stride (ReLU of a
    per-level scaled output); :meth:`decode` returns them in level-0 grid
    units.

    Args:
        num_classes (int): Action classes.
        in_channels (int): Channels of the neck levels.
        feat_channels (int): Channels of the towers. Defaults to 256.
        num_convs (int): Conv layers per tower. Defaults to 2.
        strides (Sequence[int]): Stride of every level (level-0 grid units).
        regress_ranges (Sequence[tuple]): Per level, the range (level-0 grid
            units) of ``max(dist to start, dist to end)`` it is responsible
            for.
        center_sample_radius (float): Positives are points within this many
            strides of a segment's centre (and inside it). Defaults to 1.5.
        loss_cls (dict): Classification loss config.
        loss_reg (dict): Regression loss config.
        init_loss_norm (float): Initial EMA of the positive count.
        loss_norm_momentum (float): EMA momentum of the positive count.
        prior_prob (float): Initial foreground probability of the classifier.
        init_cfg (dict, optional): MMEngine init config.
        norm_eps (float): Eps of the towers' LayerNorms (OpenTAD: 1e-6).
            Defaults to 1e-5.
        tower_bias (bool): Biases in the tower convolutions (OpenTAD has
            none: a LayerNorm follows). Defaults to True.
        label_smoothing (float): ``eps``: class targets become
            ``t * (1 - eps) + eps / (num_classes + 1)`` (OpenTAD's form).
            Defaults to 0.

    A point is a positive of a segment when it lies strictly inside the
    segment's centre region (``centre +- center_sample_radius * stride``,
    clipped to the segment): a point exactly on its border is not, as in
    ActionFormer / OpenTAD. The positive count normalises the losses: in
    training through an EMA (the ``loss_normalizer`` buffer, updated), in
    eval mode the batch's own ``max(num_pos, 1)`` (as OpenTAD).
    """

    def __init__(self, num_classes, in_channels, feat_channels=256,
                 num_convs=2, strides=(1, 2, 4, 8, 16, 32),
                 regress_ranges=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                                 (64, INF)),
                 center_sample_radius=1.5,
                 loss_cls=dict(type='TALSigmoidFocalLoss'),
                 loss_reg=dict(type='DIoU1DLoss'), init_loss_norm=100.,
                 loss_norm_momentum=0.9, prior_prob=0.01, init_cfg=None,
                 *, norm_eps: float = 1e-5, tower_bias: bool = True,
                 label_smoothing: float = 0.):
        super().__init__(init_cfg=init_cfg)
        self.norm_eps, self.tower_bias = norm_eps, tower_bias
        self.label_smoothing = label_smoothing
        assert len(strides) == len(regress_ranges)
        self.num_classes = num_classes
        self.strides, self.regress_ranges = list(strides), regress_ranges
        self.center_sample_radius = center_sample_radius
        self.loss_cls, self.loss_reg = MODELS.build(loss_cls), MODELS.build(
            loss_reg)
        self.loss_norm_momentum = loss_norm_momentum
        # float: an integer in a config (100) would make a long buffer
        self.register_buffer('loss_normalizer',
                             torch.tensor(float(init_loss_norm)))
        self.cls_tower = self._tower(in_channels, feat_channels, num_convs)
        self.reg_tower = self._tower(in_channels, feat_channels, num_convs)
        self.cls_out = nn.Conv1d(feat_channels, num_classes, 3, padding=1)
        self.reg_out = nn.Conv1d(feat_channels, 2, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in strides)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior_prob) /
                                                       prior_prob))

    def _tower(self, cin, cout, n):
        layers = nn.ModuleList()
        for i in range(n):
            layers.append(nn.ModuleList([
                nn.Conv1d(cin if i == 0 else cout, cout, 3, padding=1,
                          bias=self.tower_bias),
                ChannelLayerNorm(cout, eps=self.norm_eps)]))
        return layers

    @staticmethod
    def _run_tower(tower, x, m):
        for conv, norm in tower:
            x = F.relu(norm(conv(x))) * m
        return x

    def level_outputs(self, feats, masks):
        """Per level, unmasked: logits (B, K, T_l) and offsets (B, 2, T_l)
        in strides (what OpenTAD's head returns)."""
        cls_outs, reg_outs = [], []
        for x, mask, scale in zip(feats, masks, self.scales):
            m = mask[:, None].to(x.dtype)
            cls_outs.append(self.cls_out(self._run_tower(self.cls_tower, x,
                                                         m)))
            reg_outs.append(F.relu(scale(self.reg_out(
                self._run_tower(self.reg_tower, x, m)))))
        return cls_outs, reg_outs

    def forward(self, feats, masks):
        """Per level: logits (B, T_l, K) and offsets (B, T_l, 2) in strides,
        zero at padded positions."""
        cls_outs, reg_outs = self.level_outputs(feats, masks)
        ms = [mask[..., None].to(c.dtype) for c, mask in zip(cls_outs, masks)]
        return ([c.transpose(1, 2) * m for c, m in zip(cls_outs, ms)],
                [r.transpose(1, 2) * m for r, m in zip(reg_outs, ms)])

    def points(self, masks):
        """(P, 4) rows ``(position, range_lo, range_hi, stride)`` of all
        levels' points, in level-0 grid units."""
        rows = []
        for mask, stride, (lo, hi) in zip(masks, self.strides,
                                          self.regress_ranges):
            pos = torch.arange(mask.shape[1], device=mask.device) * stride
            pos = pos.float()
            rows.append(torch.stack([
                pos, torch.full_like(pos, lo), torch.full_like(pos, hi),
                torch.full_like(pos, stride)], 1))
        return torch.cat(rows)

    def assign(self, points, gt_segments, gt_labels):
        """Targets of one sample.

        Args:
            points (Tensor): (P, 4) from :meth:`points`.
            gt_segments (Tensor): (N, 2) in level-0 grid units.
            gt_labels (Tensor): (N,) labels.

        Returns:
            tuple[Tensor, Tensor]: (P, K) 0/1 class targets and (P, 2)
            offset targets in units of each point's stride (at points that
            are no positive: the distances to the first segment, a don't
            care value, as OpenTAD's).
        """
        P, N = points.shape[0], gt_segments.shape[0]
        cls_t = points.new_zeros(P, self.num_classes)
        if N == 0:
            return cls_t, points.new_zeros(P, 2)
        pos, lo, hi, stride = (points[:, i:i + 1] for i in range(4))
        s, e = gt_segments[None, :, 0], gt_segments[None, :, 1]
        left, right = pos - s, e - pos  # (P, N)
        center, r = 0.5 * (s + e), self.center_sample_radius * stride
        cb_left = pos - torch.max(center - r, s)
        cb_right = torch.min(center + r, e) - pos
        inside = torch.min(cb_left, cb_right) > 0  # border: outside
        reach = torch.max(left, right)
        ok = inside & (reach >= lo) & (reach <= hi)
        length = (e - s).expand(P, N).masked_fill(~ok, INF)
        min_len, best = length.min(1)
        positive = min_len < INF
        # every gt with the (same) minimal length gives its label
        chosen = (length <= min_len[:, None] + 1e-3) & positive[:, None]
        cls_t = (chosen.float() @ F.one_hot(
            gt_labels.long(), self.num_classes).float()).clamp(max=1)
        reg_t = torch.stack([left.gather(1, best[:, None])[:, 0],
                             right.gather(1, best[:, None])[:, 0]], 1)
        return cls_t, reg_t / stride

    def loss(self, cls_outs, reg_outs, masks, gt_segments, gt_labels):
        """Losses of a batch; ``gt_segments`` per sample in grid units."""
        points = self.points(masks)
        targets = [self.assign(points, s, l)
                   for s, l in zip(gt_segments, gt_labels)]
        cls_t = torch.stack([t[0] for t in targets])  # (B, P, K)
        reg_t = torch.stack([t[1] for t in targets])
        logits, offsets = torch.cat(cls_outs, 1), torch.cat(reg_outs, 1)
        valid = torch.cat(masks, 1)
        pos = (cls_t.sum(-1) > 0) & valid
        num_pos = pos.sum().item()
        norm = self._normalizer(num_pos)
        if self.label_smoothing:
            eps = self.label_smoothing
            cls_t = cls_t * (1 - eps) + eps / (self.num_classes + 1)
        loss_cls = self.loss_cls(logits[valid], cls_t[valid]) / norm
        if num_pos > 0:
            loss_reg = self.loss_reg(offsets[pos], reg_t[pos]) / norm
        else:
            loss_reg = offsets.sum() * 0
        return dict(loss_cls=loss_cls, loss_reg=loss_reg)

    def _normalizer(self, num_pos: int) -> float:
        """The losses' divisor: the updated EMA of the positive count in
        training, ``max(num_pos, 1)`` in eval mode."""
        if not self.training:
            return float(max(num_pos, 1))
        m = self.loss_norm_momentum
        self.loss_normalizer.mul_(m).add_((1 - m) * max(num_pos, 1))
        return self.loss_normalizer.item()

    def decode(self, cls_outs, reg_outs, masks):
        """Batched scores (B, P, K), segments (B, P, 2) in grid units and
        valid mask (B, P)."""
        points = self.points(masks)
        scores = torch.cat(cls_outs, 1).sigmoid()
        off = torch.cat(reg_outs, 1) * points[None, :, 3:4]
        seg = torch.stack([points[None, :, 0] - off[..., 0],
                           points[None, :, 0] + off[..., 1]], -1)
        return scores, seg, torch.cat(masks, 1)

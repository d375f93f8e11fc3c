"""TriDet's Trident head (Shi et al., CVPR 2023), which locates each
boundary by the expectation of a relative probability distribution over the
instants around it.

:class:`TriDetHead` fits :class:`~re2tal_mm.models.TemporalActionLocalizer`
like ``ActionFormerHead``: it returns per level class logits and *boundary
logits* (the logits of the relative distributions), and its
:meth:`TriDetHead.loss` / :meth:`TriDetHead.decode` read them (the SGP neck
is in :mod:`re2tal_mm.models.tridet_neck`).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmaction.registry import MODELS
from .head import INF, ActionFormerHead
from .neck import ChannelLayerNorm
from .tridet_neck import PADDED_POSITIONS, check_choice

#: the logit of a boundary neighbour outside the valid sequence
OUTSIDE_NEIGHBOURS = ('virtual', 'zero')
#: what the regression loss is divided by in eval mode
EVAL_REG_NORMS = ('ema', 'count')


def neighbour_responses(resp: Tensor, mask: Tensor, num_bins: int,
                        side: str, border_logit: float = 0.,
                        outside: str = 'virtual') -> Tensor:
    """The boundary responses around every instant.

    A level's instants sit at ``0, s, 2s, ...`` (``s`` its stride) while the
    sequence they sample extends up to one stride further (the level-0 grid
    up to ``T - 0.5`` or ``T``; a window-clipped action ends there): a start
    before the first instant, or an end after the last one, lies between the
    border instant and the *virtual* instant one stride outside. That
    neighbour takes the constant response ``border_logit`` (the published
    model's zero padding) instead of being excluded, so the expectation can
    reach the sequence border; neighbours further outside are excluded.

    Args:
        resp (Tensor): (B, K, T) start (or end) responses.
        mask (Tensor): (B, T) valid instants.
        num_bins (int): Largest distance ``B``.
        side (str): ``'start'``: bin ``b`` of instant ``t`` is the response
            at ``t - b``; ``'end'``: at ``t + b``.
        border_logit (float): Response of the virtual instant just outside
            the valid sequence (before its first instant for ``'start'``,
            after its last for ``'end'``). Defaults to 0.
        outside (str): ``'virtual'`` as above; ``'zero'`` (OpenTAD's zero
            padding): every neighbour outside the valid sequence, up to
            ``num_bins`` strides out, takes ``border_logit``. Defaults to
            ``'virtual'``.

    Returns:
        Tensor: (B, T, K, num_bins + 1); ``-inf`` where ``t -+ b`` is neither
        a valid instant nor the virtual one (bin 0, the instant itself, is
        always kept).
    """
    pad = (num_bins, 0) if side == 'start' else (0, num_bins)
    valid = F.pad(mask, pad, value=False)
    # the virtual instant: invalid, its neighbour towards the sequence valid
    inward = F.pad(valid[:, 1:], (0, 1), value=False) if side == 'start' \
        else F.pad(valid[:, :-1], (1, 0), value=False)
    virtual = ~valid if outside == 'zero' else ~valid & inward
    out = F.pad(resp, pad).masked_fill(~valid[:, None], float('-inf'))
    out = out.masked_fill(virtual[:, None], border_logit)
    win = out.unfold(-1, num_bins + 1, 1)
    if side == 'start':
        win = win.flip(-1)
    win = torch.cat([resp[..., None], win[..., 1:]], -1)
    return win.transpose(1, 2)


def expected_distance(logits: Tensor) -> Tensor:
    """Expectation of the distance ``b`` under ``softmax_b(logits)``."""
    bins = torch.arange(logits.shape[-1], device=logits.device,
                        dtype=logits.dtype)
    return logits.softmax(-1) @ bins


def offset_iou(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """IoU of segments given as (to start, to end) offsets from one point."""
    inter = torch.min(pred, target).sum(-1)
    union = pred.sum(-1) + target.sum(-1) - inter
    return inter / union.clamp(min=eps)


@MODELS.register_module()
class TriDetHead(ActionFormerHead):
    """Trident head: a classification branch, start and end boundary branches
    and a center-offset branch over every pyramid level.

    For instant ``t`` of a level and class ``c`` (one shared class when
    ``class_aware_boundaries`` is False), with the start response ``R_s``,
    the end response ``R_e`` and the center-offset scores ``C_s``, ``C_e``
    (``num_bins + 1`` each, a per-level scaled conv)::

        P_s(b) = softmax_b(R_s[t - b, c] + C_s[t, b]),  b = 0..num_bins
        d_s    = sum_b b * P_s(b)                 (and d_e from t + b)
        segment = (t - d_s * stride, t + d_e * stride)

    Neighbours outside the valid sequence are excluded (probability 0),
    except the one just outside it (response 0, see
    :func:`neighbour_responses`): a level's last instant sits one stride
    before the sequence end, so an end (start) up to one stride past the
    last (before the first) instant stays reachable.
    :meth:`forward` returns these logits as its second output; the loss is
    the focal loss (positives weighted by ``IoU ** iou_weight_power`` of
    their decoded segment, IoU not back-propagated) plus the DIoU loss of the
    decoded offsets, normalised by the EMA of the positive count; targets
    (centre sampling, regression ranges) are ActionFormer's.

    Args:
        num_classes (int): Action classes.
        in_channels (int): Channels of the neck levels.
        feat_channels (int): Channels of the towers. Defaults to 512.
        num_convs (int): Conv layers per tower. Defaults to 2.
        strides (Sequence[int]): Stride of every level (level-0 grid units).
        regress_ranges (Sequence[tuple]): Per level, the range of
            ``max(dist to start, dist to end)`` it is responsible for.
        num_bins (int): Largest boundary distance, in the level's strides.
            Defaults to 16.
        boundary_kernel_size (int): Conv kernel of the boundary branches.
            Defaults to 3.
        class_aware_boundaries (bool): One start / end response per class
            (the published model; :meth:`decode` then gives one candidate
            per instant and class) instead of one shared. Defaults to True.
        detach_boundary_feats (bool): The boundary branches do not
            back-propagate into the neck (as published, over pretrained
            features; a neck trained from scratch then gets no boundary
            signal and the decoded boundaries are about 2x less precise on
            synthetic data, ``tools/analysis/compare_heads.py``). Defaults
            to True.
        offset_relu (bool): ``ReLU`` on the center-offset scores (the
            published code reuses ActionFormer's distance regression output,
            ``relu(scale * conv)``). The scores are logits added to the
            boundary responses, so a floor at 0 buys nothing, and a bin
            whose score is negative at every instant gets no gradient: it
            is stuck at 0 while its neighbours' scores grow, and the bin is
            never chosen. On ``tools/analysis/compare_heads.py`` (seed 2)
            training kills start bin 0 at every level: each start less than
            one stride before its instant decodes one full stride early, and
            those candidates outscore the accurate ones. Defaults to False.
        iou_weight_power (float): Exponent of the IoU weight of the
            positives' classification loss; 0 disables it. Defaults to 0.2.
        center_sample_radius (float): Defaults to 1.5.
        loss_cls (dict): Classification loss config (its reduction is set
            to ``'none'``). Defaults to ``TALSigmoidFocalLoss``.
        loss_reg (dict): Regression loss config. Defaults to ``DIoU1DLoss``.
        init_loss_norm (float): Defaults to 100.
        loss_norm_momentum (float): Defaults to 0.9.
        prior_prob (float): Defaults to 0.01.
        padded_positions (str): ``'masked'``: class logits and center-offset
            scores are zeroed at padded instants, and padded neighbours of a
            boundary are outside the sequence (``outside_neighbours``);
            ``'computed'`` (OpenTAD): padded instants are computed like
            valid ones, their responses enter the boundary distributions of
            valid instants near the end, and only neighbours beyond the
            (padded) level are outside, so the decoded boundaries depend on
            the padded length. Scores and losses only read valid instants
            either way. Defaults to ``'masked'``.
        outside_neighbours (str): Boundary neighbours outside the sequence:
            ``'virtual'``: the one just outside takes logit 0, the others are
            excluded (see :func:`neighbour_responses`), so a boundary
            distribution never puts mass beyond one stride outside the
            sequence; ``'zero'`` (OpenTAD's zero padding): all of them take
            logit 0 (plus their center-offset score), which pulls the
            decoded start of an instant near the sequence start out of the
            sequence (up to ``num_bins`` strides). Defaults to
            ``'virtual'``.
        tower_bias (bool): Biases in the tower convolutions, boundary
            towers included (OpenTAD's ``ConvModule`` drops them before its
            LayerNorm, which does not absorb a per-channel bias). Defaults
            to True.
        norm_eps (float): Epsilon of the towers' LayerNorms (OpenTAD: 1e-6).
            Defaults to 1e-5.
        eval_reg_norm (str): What the regression loss is divided by in eval
            mode: ``'ema'``, the normaliser buffer, as the classification
            loss and as in training; ``'count'`` (OpenTAD's TriDet):
            ``max(num_pos, 1)``, while its classification loss stays divided
            by the buffer. Defaults to ``'ema'``.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self, num_classes: int, in_channels: int,
                 feat_channels: int = 512, num_convs: int = 2,
                 strides: Sequence[int] = (1, 2, 4, 8, 16, 32),
                 regress_ranges: Sequence[tuple] = (
                     (0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, INF)),
                 num_bins: int = 16, boundary_kernel_size: int = 3,
                 class_aware_boundaries: bool = True,
                 detach_boundary_feats: bool = True,
                 offset_relu: bool = False,
                 iou_weight_power: float = 0.2,
                 center_sample_radius: float = 1.5,
                 loss_cls: dict = dict(type='TALSigmoidFocalLoss'),
                 loss_reg: dict = dict(type='DIoU1DLoss'),
                 init_loss_norm: float = 100.,
                 loss_norm_momentum: float = 0.9, prior_prob: float = 0.01,
                 padded_positions: str = 'masked',
                 outside_neighbours: str = 'virtual',
                 tower_bias: bool = True, norm_eps: float = 1e-5,
                 eval_reg_norm: str = 'ema',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(num_classes, in_channels, feat_channels, num_convs,
                         strides, regress_ranges, center_sample_radius,
                         dict(loss_cls, reduction='none'), loss_reg,
                         init_loss_norm, loss_norm_momentum,
                         prior_prob, init_cfg, norm_eps=norm_eps,
                         tower_bias=tower_bias)
        self.num_bins, self.iou_weight_power = num_bins, iou_weight_power
        self.detach_boundary_feats = detach_boundary_feats
        self.offset_relu = offset_relu
        self.padded_positions = check_choice(
            'padded_positions', padded_positions, PADDED_POSITIONS)
        self.outside_neighbours = check_choice(
            'outside_neighbours', outside_neighbours, OUTSIDE_NEIGHBOURS)
        self.eval_reg_norm = check_choice('eval_reg_norm', eval_reg_norm,
                                          EVAL_REG_NORMS)
        self.boundary_classes = num_classes if class_aware_boundaries else 1
        # center-offset branch: C_s and C_e, (num_bins + 1) scores each
        self.reg_out = nn.Conv1d(feat_channels, 2 * (num_bins + 1), 3,
                                 padding=1)
        self.start_branch = self._boundary_branch(
            in_channels, feat_channels, num_convs, boundary_kernel_size)
        self.end_branch = self._boundary_branch(
            in_channels, feat_channels, num_convs, boundary_kernel_size)

    def _boundary_branch(self, cin, cout, n, kernel_size):
        pad = kernel_size // 2
        tower = nn.ModuleList(
            nn.ModuleList([
                nn.Conv1d(cin if i == 0 else cout, cout, kernel_size,
                          padding=pad, bias=self.tower_bias),
                ChannelLayerNorm(cout, eps=self.norm_eps)])
            for i in range(n))
        out = nn.Conv1d(cout, self.boundary_classes, kernel_size,
                        padding=pad)
        return nn.ModuleDict(dict(tower=tower, out=out))

    def _response(self, branch, x, m):
        return branch['out'](self._run_tower(branch['tower'], x, m))

    def boundary_logits(self, start: Tensor, end: Tensor, offsets: Tensor,
                        mask: Tensor) -> Tensor:
        """Logits of the relative boundary distributions of one level.

        Args:
            start (Tensor): (B, K', T) start responses.
            end (Tensor): (B, K', T) end responses.
            offsets (Tensor): (B, 2 * (num_bins + 1), T) center-offset scores
                (start bins first).
            mask (Tensor): (B, T) valid instants.

        Returns:
            Tensor: (B, T, K', 2, num_bins + 1), start then end.
        """
        B, _, T = offsets.shape
        c = offsets.transpose(1, 2).reshape(B, T, 1, 2, self.num_bins + 1)
        if self.padded_positions == 'computed':  # the level's whole array
            mask = torch.ones_like(mask)
        s, e = (neighbour_responses(r, mask, self.num_bins, side,
                                    outside=self.outside_neighbours)
                for r, side in ((start, 'start'), (end, 'end')))
        return torch.stack([s, e], -2) + c

    def level_outputs(self, feats, masks) -> Tuple[list, ...]:
        """Per level, not masked (what OpenTAD's head computes): class
        logits (B, K, T_l), center-offset scores (B, 2 * (num_bins + 1),
        T_l) (start bins first, bin ``b`` at distance ``b``) and the start
        and end responses (B, K', T_l)."""
        outs = ([], [], [], [])
        for x, mask, scale in zip(feats, masks, self.scales):
            m = mask[:, None].to(x.dtype)
            off = scale(self.reg_out(self._run_tower(self.reg_tower, x, m)))
            xb = x.detach() if self.detach_boundary_feats else x
            for out, value in zip(outs, (
                    self.cls_out(self._run_tower(self.cls_tower, x, m)),
                    F.relu(off) if self.offset_relu else off,
                    self._response(self.start_branch, xb, m),
                    self._response(self.end_branch, xb, m))):
                out.append(value)
        return outs

    def forward(self, feats, masks):
        """Per level: logits (B, T_l, K) and boundary logits
        (B, T_l, K', 2, num_bins + 1) (see :meth:`boundary_logits`)."""
        cls_outs, reg_outs = [], []
        for cls, off, start, end, mask in zip(
                *self.level_outputs(feats, masks), masks):
            if self.padded_positions == 'masked':
                m = mask[:, None].to(cls.dtype)
                cls, off = cls * m, off * m
            cls_outs.append(cls.transpose(1, 2))
            reg_outs.append(self.boundary_logits(start, end, off, mask))
        return cls_outs, reg_outs

    @staticmethod
    def distances(reg_outs) -> Tensor:
        """(B, P, K', 2) expected (to start, to end) distances, in strides,
        of all levels' boundary logits."""
        return expected_distance(torch.cat(reg_outs, 1))

    def _pairs(self, dist: Tensor, cls_t: Tensor, reg_t: Tensor,
               pos: Tensor):
        """Predicted and target offsets (N, 2) of every positive instant and
        class (of every positive instant, shared boundaries), and the
        classification weight (B, P, K): ``IoU ** iou_weight_power`` at the
        positive entries, 1 elsewhere."""
        rated = cls_t.bool() & pos[..., None]
        pairs = rated if self.boundary_classes > 1 else pos[..., None]
        pred = dist[pairs]
        target = reg_t[:, :, None].expand(*pairs.shape, 2)[pairs]
        weight = torch.ones_like(cls_t, dtype=dist.dtype)
        if self.iou_weight_power and len(pred):
            iou = offset_iou(pred.detach(), target.to(pred.dtype))
            iou = iou**self.iou_weight_power
            if self.boundary_classes == 1:  # one IoU per positive class
                iou = iou.repeat_interleave(rated[pos].sum(-1))
            weight[rated] = iou
        return pred, target, weight

    def loss(self, cls_outs, reg_outs, masks, gt_segments, gt_labels):
        """Losses of a batch; ``gt_segments`` per sample in grid units."""
        points = self.points(masks)
        targets = [self.assign(points, s, lab)
                   for s, lab in zip(gt_segments, gt_labels)]
        cls_t = torch.stack([t[0] for t in targets])  # (B, P, K)
        reg_t = torch.stack([t[1] for t in targets])  # (B, P, 2)
        dist, valid = self.distances(reg_outs), torch.cat(masks, 1)
        pos = (cls_t.sum(-1) > 0) & valid
        num_pos = pos.sum().item()
        if self.training:
            mom = self.loss_norm_momentum
            self.loss_normalizer.mul_(mom).add_((1 - mom) * max(num_pos, 1))
        norm = reg_norm = self.loss_normalizer.item()
        if not self.training and self.eval_reg_norm == 'count':
            reg_norm = max(num_pos, 1)
        pred, target, weight = self._pairs(dist, cls_t, reg_t, pos)
        loss_cls = self.loss_cls(torch.cat(cls_outs, 1), cls_t) * weight
        loss_cls = loss_cls[valid].sum() / norm
        if num_pos > 0:
            loss_reg = self.loss_reg(pred, target) / reg_norm
        else:
            loss_reg = dist.sum() * 0
        return dict(loss_cls=loss_cls, loss_reg=loss_reg)

    def decode(self, cls_outs, reg_outs, masks):
        """Batched scores (B, N, K), segments (B, N, 2) in grid units and
        valid mask (B, N). With class-aware boundaries every instant gives
        one candidate per class (``N = P * K``), scored for its class only.
        """
        points = self.points(masks)
        scores = torch.cat(cls_outs, 1).sigmoid()
        off = self.distances(reg_outs) * points[None, :, None, 3:4]
        pos = points[None, :, None, 0]
        seg = torch.stack([pos - off[..., 0], pos + off[..., 1]], -1)
        valid = torch.cat(masks, 1)
        if self.boundary_classes == 1:
            return scores, seg[:, :, 0], valid
        B, P, K = scores.shape
        eye = torch.eye(K, dtype=scores.dtype, device=scores.device)
        scores = (scores[..., None] * eye).reshape(B, P * K, K)
        return (scores, seg.reshape(B, P * K, 2),
                valid.repeat_interleave(K, 1))


__all__ = ['TriDetHead', 'neighbour_responses', 'expected_distance',
           'offset_iou']

"""Losses of the localization head: sigmoid focal loss and 1D DIoU / GIoU."""
import torch
import torch.nn as nn

from mmaction.registry import MODELS


def _reduce(loss, reduction):
    if reduction == 'sum':
        return loss.sum()
    if reduction == 'mean':
        return loss.mean() if loss.numel() else loss.sum()
    return loss


@MODELS.register_module()
class TALSigmoidFocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al., 2017) on per-position class logits.

    Args:
        alpha (float): Weight of positives (``1 - alpha`` for negatives);
            negative to disable. Defaults to 0.25.
        gamma (float): Focusing exponent. Defaults to 2.0.
        reduction (str): ``'sum'``, ``'mean'`` or ``'none'``. Defaults to
            ``'sum'`` (the head divides by its positive-count normalizer).
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, alpha=0.25, gamma=2.0, reduction='sum',
                 loss_weight=1.0):
        super().__init__()
        self.alpha, self.gamma = alpha, gamma
        self.reduction, self.loss_weight = reduction, loss_weight

    def forward(self, logits, targets):
        """Loss of ``logits`` against 0/1 ``targets`` of the same shape."""
        targets = targets.to(logits.dtype)
        p = torch.sigmoid(logits)
        ce = nn.functional.binary_cross_entropy_with_logits(
            logits, targets, reduction='none')
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * (1 - p_t)**self.gamma
        if self.alpha >= 0:
            loss = loss * (self.alpha * targets + (1 - self.alpha) *
                           (1 - targets))
        return self.loss_weight * _reduce(loss, self.reduction)


@MODELS.register_module()
class DIoU1DLoss(nn.Module):
    """Distance-IoU (or generalized IoU) loss of 1D segments given as offsets.

    Both prediction and target are ``(N, 2)`` non-negative distances
    ``(to start, to end)`` from the same anchor point.

    Args:
        mode (str): ``'diou'`` or ``'giou'``. Defaults to ``'diou'``.
        reduction (str): ``'sum'``, ``'mean'`` or ``'none'``. Defaults to
            ``'sum'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        eps (float): Numerical floor of denominators. Defaults to 1e-8.
    """

    def __init__(self, mode='diou', reduction='sum', loss_weight=1.0,
                 eps=1e-8):
        super().__init__()
        if mode not in ('diou', 'giou'):
            raise ValueError(f"mode must be 'diou' or 'giou', got {mode!r}")
        self.mode, self.reduction = mode, reduction
        self.loss_weight, self.eps = loss_weight, eps

    def forward(self, pred, target):
        """Loss of predicted offsets ``pred`` against ``target`` (N, 2)."""
        pred, target = pred.float(), target.float()
        lp, rp = pred[:, 0], pred[:, 1]
        lg, rg = target[:, 0], target[:, 1]
        inter = torch.min(lp, lg) + torch.min(rp, rg)
        union = (lp + rp) + (lg + rg) - inter
        iou = inter / union.clamp(min=self.eps)
        enclose = torch.max(lp, lg) + torch.max(rp, rg)
        if self.mode == 'giou':
            loss = 1 - iou + (enclose - union) / enclose.clamp(min=self.eps)
        else:
            center_dist = 0.5 * ((rp - lp) - (rg - lg))
            loss = 1 - iou + (center_dist / enclose.clamp(min=self.eps))**2
        return self.loss_weight * _reduce(loss, self.reduction)

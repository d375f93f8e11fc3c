"""OpenTAD's ``ActionFormer`` detector, here.

OpenTAD's ``Conv1DTransformerProj`` + ``FPNIdentity`` is our
:class:`~re2tal_mm.models.ActionFormerTransformerNeck` and its
``ActionFormerHead`` our :class:`~re2tal_mm.models.ActionFormerHead` with
``norm_eps=1e-6, tower_bias=False`` (and its ``label_smoothing``): 230 of 230
tensors map (``projection.*`` and ``neck.*`` to our ``neck.*``,
``rpn_head.*`` to ``head.*``; the ``AffineDropPath`` scales ``(1, C, 1)`` to
MMCV ``LayerScale`` weights ``(C,)``, the int64 ``loss_normalizer`` to our
float buffer).
"""
from typing import Dict, List, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .keys import map_keys

_BLOCK = r'projection\.(stem|branch)\.(\d+)\.'
RULES = [
    (r'projection\.embed\.(\d+)\.conv\.(weight|bias)',
     r'neck.embed_convs.\1.\2'),
    (r'projection\.embed\.(\d+)\.norm\.(weight|bias)',
     r'neck.embed_norms.\1.\2'),
    (_BLOCK + r'attn\.(query|key|value)_conv\.conv\.weight',
     r'neck.\1.\2.attn.\3_conv.weight'),
    (_BLOCK + r'drop_path_(attn|mlp)\.scale',
     r'neck.\1.\2.drop_path_\3.weight'),
    (_BLOCK + r'((ln1|ln2|mlp\.0|mlp\.3|attn\.(query|key|value|proj)|'
     r'attn\.(query|key|value)_norm)\.(weight|bias))', r'neck.\1.\2.\3'),
    (r'neck\.fpn_norms\.(\d+)\.(weight|bias)', r'neck.out_norms.\1.\2'),
    (r'rpn_head\.(cls|reg)_convs\.(\d+)\.conv\.(weight|bias)',
     r'head.\1_tower.\2.0.\3'),
    (r'rpn_head\.(cls|reg)_convs\.(\d+)\.norm\.(weight|bias)',
     r'head.\1_tower.\2.1.\3'),
    (r'rpn_head\.(cls|reg)_head\.(weight|bias)', r'head.\1_out.\2'),
    (r'rpn_head\.scale\.(\d+)\.scale', r'head.scales.\1.scale'),
    (r'rpn_head\.loss_normalizer', r'head.loss_normalizer'),
]

_PROJ_DEFAULTS = dict(arch=(2, 2, 5), conv_cfg=None, norm_cfg=None,
                      attn_cfg=None, path_pdrop=0., use_abs_pe=False,
                      max_seq_len=2304, input_pdrop=0.)
_HEAD_DEFAULTS = dict(num_convs=3, loss_normalizer=100,
                      loss_normalizer_momentum=0.9, center_sample='radius',
                      center_sample_radius=1.5, label_smoothing=0,
                      cls_prior_prob=0.01, loss_weight=1.0,
                      filter_similar_gt=True)


ROLE = 'detector'


def owns_keys(state_dict: Mapping[str, Tensor]) -> bool:
    """Detector keys of an ActionFormer (a head without TriDet's start /
    end branches)."""
    return 'rpn_head.cls_head.weight' in state_dict and \
        'rpn_head.cls_start_head.weight' not in state_dict


def matches(fixture: dict) -> bool:
    """Whether ``fixture`` holds an OpenTAD ``ActionFormer`` detector."""
    cfg = fixture.get('config') or {}
    return isinstance(cfg, dict) and cfg.get('type') == 'ActionFormer'


def _transform(key: str, value: Tensor) -> Tensor:
    if key.endswith('drop_path_attn.weight') or \
            key.endswith('drop_path_mlp.weight'):
        return value.reshape(-1)  # (1, C, 1) -> LayerScale's (C,)
    if key == 'head.loss_normalizer' and not value.is_floating_point():
        return value.to(torch.float32)  # a fresh head's int64 100
    return value


def convert_state_dict(state_dict: Mapping[str, Tensor]
                       ) -> Tuple[Dict[str, Tensor], List[str]]:
    """OpenTAD ``ActionFormer`` keys (``projection.*``, ``neck.*``,
    ``rpn_head.*``) to our ``TemporalActionLocalizer`` keys (``neck.*``,
    ``head.*``); nothing is dropped."""
    return map_keys(state_dict, RULES, where='ActionFormer localizer',
                    transform=_transform)


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f'OpenTAD ActionFormer config: {what} is not '
                         'reproduced by our ActionFormerTransformerNeck / '
                         'ActionFormerHead')


def _neck_cfg(proj: dict, neck: dict) -> dict:
    p = dict(_PROJ_DEFAULTS, **proj)
    _check(proj.get('type') == 'Conv1DTransformerProj',
           f'projection type {proj.get("type")!r}')
    _check(not isinstance(p['in_channels'], (list, tuple)),
           'a multi-input projection (in_channels list)')
    norm = p['norm_cfg']
    _check(norm is None or norm.get('type') == 'LN',
           f'projection norm_cfg {norm!r} (LN or None)')
    arch = tuple(int(a) for a in p['arch'])
    n = neck or {}
    _check(n.get('type') == 'FPNIdentity', f'neck {n.get("type")!r}')
    _check(n.get('start_level', 0) == 0 and n.get('end_level', -1) in (
        -1, 1 + arch[2]) and n.get('num_levels', 0) == 1 + arch[2] and
        n.get('in_channels') == n.get('out_channels') == p['out_channels'],
        'an FPNIdentity over other levels or widths than the projection\'s')
    fpn_norm = n.get('norm_cfg', dict(type='LN'))
    _check(fpn_norm is None or fpn_norm.get('type') == 'LN',
           f'FPNIdentity norm_cfg {fpn_norm!r} (LN or None)')
    win = p['attn_cfg']['n_mha_win_size']
    return dict(
        type='ActionFormerTransformerNeck', in_channels=p['in_channels'],
        embed_dims=p['out_channels'], arch=arch,
        kernel_size=p['conv_cfg']['kernel_size'],
        num_heads=p['attn_cfg']['n_head'],
        window_size=win if isinstance(win, int) else list(win),
        drop_path=float(p['path_pdrop']),
        proj_drop=float(p['conv_cfg'].get('proj_pdrop', 0.)),
        input_drop=float(p['input_pdrop']), embed_norm=norm is not None,
        norm_eps=1e-6, abs_pe=bool(p['use_abs_pe']),
        max_seq_len=int(p['max_seq_len']), out_norm=fpn_norm is not None,
        mask_outputs=False)


def _losses(loss: dict, weight: float) -> Tuple[dict, dict]:
    cls, reg = dict(loss['cls_loss']), dict(loss['reg_loss'])
    _check(cls.pop('type') == 'FocalLoss', f'cls_loss {loss["cls_loss"]!r}')
    kind = reg.pop('type')
    _check(kind in ('DIOULoss', 'GIOULoss') and not reg,
           f'reg_loss {loss["reg_loss"]!r}')
    _check(weight > 0, f'loss_weight {weight} (<= 0: adaptive)')
    return (dict(type='TALSigmoidFocalLoss', alpha=cls.get('alpha', 0.25),
                 gamma=cls.get('gamma', 2.0)),
            dict(type='DIoU1DLoss', mode=kind[:4].lower(),
                 loss_weight=float(weight)))


def _head_cfg(head: dict) -> dict:
    h = dict(_HEAD_DEFAULTS, **head)
    _check(head.get('type') == 'ActionFormerHead',
           f'rpn_head {head.get("type")!r}')
    _check(h['center_sample'] == 'radius',
           f'center_sample {h["center_sample"]!r}')
    _check(h['filter_similar_gt'], 'filter_similar_gt=False')
    gen = h['prior_generator']
    _check(gen.get('type') == 'PointGenerator' and
           not gen.get('use_offset', False),
           f'prior_generator {gen!r} (PointGenerator without offset)')
    loss_cls, loss_reg = _losses(h['loss'], h['loss_weight'])
    return dict(
        type='ActionFormerHead', num_classes=h['num_classes'],
        in_channels=h['in_channels'], feat_channels=h['feat_channels'],
        num_convs=h['num_convs'], strides=tuple(gen['strides']),
        regress_ranges=tuple(tuple(r) for r in gen['regression_range']),
        center_sample_radius=float(h['center_sample_radius']),
        loss_cls=loss_cls, loss_reg=loss_reg,
        init_loss_norm=float(h['loss_normalizer']),
        loss_norm_momentum=float(h['loss_normalizer_momentum']),
        prior_prob=float(h['cls_prior_prob']), norm_eps=1e-6,
        tower_bias=False, label_smoothing=float(h['label_smoothing']))


def model_cfg(config: dict) -> dict:
    """Our ``TemporalActionLocalizer`` neck and head computing OpenTAD's
    ``ActionFormer`` (its detector config, e.g. a fixture's ``config``).

    Returns:
        dict: ``neck`` (an ``ActionFormerTransformerNeck`` config) and
        ``head`` (an ``ActionFormerHead`` config).

    Raises:
        ValueError: A setting whose OpenTAD behaviour we do not reproduce
            (named).
    """
    _check(config.get('type') == 'ActionFormer',
           f'detector {config.get("type")!r}')
    return dict(neck=_neck_cfg(config['projection'], config.get('neck')),
                head=_head_cfg(config['rpn_head']))


def max_div_factor(config: dict) -> int:
    """The length OpenTAD pads a detector input beyond ``max_seq_len`` to a
    multiple of (strides times attention windows)."""
    proj, gen = config['projection'], config['rpn_head']['prior_generator']
    win = proj['attn_cfg']['n_mha_win_size']
    wins = [win] * (1 + proj['arch'][2]) if isinstance(win, int) else win
    return max([s * (w // 2) * 2 if w > 1 else s
                for s, w in zip(gen['strides'], wins)] + [1])


def pad_like_opentad(x: Tensor, mask: Tensor,
                     config: dict) -> Tuple[Tensor, Tensor]:
    """``ActionFormer.pad_data``: pad (B, C, T) features and their mask to
    ``max_seq_len``, or beyond it to a multiple of :func:`max_div_factor`."""
    T, max_len = x.shape[-1], int(config['projection']['max_seq_len'])
    if T > max_len:
        div = max_div_factor(config)
        max_len = -(-T // div) * div
    return F.pad(x, (0, max_len - T)), F.pad(mask, (0, max_len - T))


def build_localizer(config: dict, drop_path: bool = True):
    """A float64 feature-mode ``TemporalActionLocalizer`` of
    :func:`model_cfg`; ``drop_path=False`` keeps the scales but never drops
    (the fixtures' deterministic training mode)."""
    from re2tal_mm.models import TemporalActionLocalizer
    from re2tal_mm.models.actionformer_neck import ScaledDropPath
    model = TemporalActionLocalizer(**model_cfg(config)).double()
    if not drop_path:
        for m in model.modules():
            if isinstance(m, ScaledDropPath):
                m.drop_prob = 0.
    return model


def _losses_of(model, x, mask, gt: dict, train: bool, init: float) -> dict:
    model.train(train)
    head = model.head
    head.loss_normalizer.fill_(init)
    feats, masks = model.neck(x, mask)
    cls_outs, reg_outs = head(feats, masks)
    losses = head.loss(cls_outs, reg_outs, masks, gt['gt_segments'],
                       gt['gt_labels'])
    points = head.points(masks)
    cls_t = torch.stack([head.assign(points, s, lab)[0] for s, lab in zip(
        gt['gt_segments'], gt['gt_labels'])])
    num_pos = int(((cls_t.sum(-1) > 0) & torch.cat(masks, 1)).sum())
    raw = head.level_outputs(feats, masks)
    model.eval()
    same = all(torch.equal(a, b) for a, b in zip(
        sum(raw, []), sum(head.level_outputs(*model.neck(x, mask)), [])))
    return dict(cls_loss=losses['loss_cls'], reg_loss=losses['loss_reg'],
                cost=losses['loss_cls'] + losses['loss_reg'],
                loss_normalizer_before=init,
                loss_normalizer_after=float(head.loss_normalizer),
                num_pos=num_pos, preds_equal_eval_outputs=same)


def _targets(head, masks, gt: dict) -> dict:
    points = head.points(masks)
    t = [head.assign(points, s, lab)
         for s, lab in zip(gt['gt_segments'], gt['gt_labels'])]
    return dict(targets_cls=torch.stack([c for c, _ in t]),
                targets_reg=torch.stack([r for _, r in t]))


def run_fixture(fixture: dict) -> dict:
    """Our outputs for an ``actionformer.pth`` fixture's inputs.

    Reads its ``config``, ``state_dict``, ``features``, ``masks``, the
    ground truths' ``gt_segments`` / ``gt_labels`` and the post-processing
    ``settings`` / ``metas`` / ``class_names`` (never its outputs). The
    stochastic depth is off (the scales kept) when the fixture's meta says
    OpenTAD's was.

    Returns:
        dict: ``eval`` (per level ``neck_features`` (B, D, T_l) as our neck
        gives them, padded positions unmasked as OpenTAD's; unmasked
        ``cls_logits`` (B, K, T_l) and ``reg_offsets`` (B, 2, T_l) of
        :meth:`ActionFormerHead.level_outputs`; ``level_masks``; ``points``;
        per video ``proposals`` / ``scores`` of our ``decode``), ``gt``
        (per ground truth: ``train`` / ``eval`` losses, positive count and
        normaliser, ``targets_cls`` / ``targets_reg`` of our ``assign``)
        and ``post_processing`` (``results`` / ``nms_raw`` of
        ``run_post_processing`` on our proposals, when that module exists).
    """
    config = fixture['config']
    drop = not fixture.get('meta', {}).get(
        'affine_droppath_drop_prob_set_to_0')
    model = build_localizer(config, drop_path=drop)
    ours, _ = convert_state_dict(fixture['state_dict'])
    model.load_state_dict(ours, strict=True)
    x, mask = pad_like_opentad(fixture['features'].to(torch.float64),
                               fixture['masks'].bool(), config)
    init = float(config['rpn_head'].get('loss_normalizer', 100))
    with torch.no_grad():
        model.eval()
        feats, masks = model.neck(x, mask)
        cls_outs, reg_outs = model.head.level_outputs(feats, masks)
        scores, segs, valid = model.head.decode(
            [c.transpose(1, 2) for c in cls_outs],
            [r.transpose(1, 2) for r in reg_outs], masks)
        out = dict(eval=dict(
            neck_features=list(feats), cls_logits=cls_outs,
            reg_offsets=reg_outs, level_masks=list(masks),
            points=model.head.points(masks),
            proposals=[s[v] for s, v in zip(segs, valid)],
            scores=[s[v] for s, v in zip(scores, valid)]))
        out['gt'] = {}
        for name, gt in fixture.get('gt', {}).items():
            gt = dict(gt_segments=[s.to(torch.float64)
                                   for s in gt['gt_segments']],
                      gt_labels=list(gt['gt_labels']))
            out['gt'][name] = dict(
                train=_losses_of(model, x, mask, gt, True, init),
                eval=_losses_of(model, x, mask, gt, False, init),
                **_targets(model.head, masks, gt))
    pp = fixture.get('post_processing')
    if pp is not None:
        try:
            from .post_processing import run_post_processing
        except ImportError:  # written by another part of the converter
            return out
        out['post_processing'] = run_post_processing(
            pp['settings'], pp['metas'], out['eval']['proposals'],
            out['eval']['scores'], list(fixture['class_names']))
    return out

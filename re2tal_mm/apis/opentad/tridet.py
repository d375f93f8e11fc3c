"""OpenTAD's ``TriDet`` (TriDetProj + FPNIdentity + TriDetHead) as our
:class:`~re2tal_mm.models.TemporalActionLocalizer` with a ``TriDetNeck`` and
a ``TriDetHead``.

Every OpenTAD tensor has a place (``projection.*`` -> ``neck.embed`` /
``stem`` / ``levels``, ``neck.fpn_norms`` -> ``neck.out_norms``,
``rpn_head.*`` -> ``head.*``); the start bins of ``rpn_head.reg_head`` are
stored in reversed order (their channel ``j`` is distance ``num_bins - j``,
ours distance ``j``). :func:`model_cfg` sets the options that make our
modules compute OpenTAD's function on those weights (each named in the
difference table of ``docs/reference_parity.md``): ``padded_positions=
'computed'``, ``pool_padding='-inf'``, ``outside_neighbours='zero'``,
``offset_relu=True``, bias-free tower / embedding convolutions, LayerNorm
eps 1e-6 and ``eval_reg_norm='count'``.
"""
import copy
from typing import Dict, List, Mapping, Tuple

import torch
from torch import Tensor

from re2tal_mm import models  # noqa: F401  (registers our localizer)

from mmaction.registry import MODELS
from .keys import map_keys

#: our SGP block's names of OpenTAD's SGPBlock parameters
_SGP = r'(ln|gn|psi|fc|convw|convkw|global_fc|mlp\.\d+|drop_path_out|' \
    r'drop_path_mlp)\.(weight|bias|scale)'
_SGP_NAMES = {'ln': 'norm', 'gn': 'ffn_norm', 'convw': 'conv_w',
              'convkw': 'conv_kw', 'drop_path_out': 'gamma1',
              'drop_path_mlp': 'gamma2'}

_HEAD_TOWERS = {'cls_convs': 'cls_tower', 'reg_convs': 'reg_tower',
                'cls_start_convs': 'start_branch.tower',
                'cls_end_convs': 'end_branch.tower'}
_HEAD_OUTS = {'cls_head': 'cls_out', 'reg_head': 'reg_out',
              'cls_start_head': 'start_branch.out',
              'cls_end_head': 'end_branch.out'}


ROLE = 'detector'


def owns_keys(state_dict: Mapping[str, Tensor]) -> bool:
    """Detector keys of a TriDet (its head has start / end branches)."""
    return 'rpn_head.cls_start_head.weight' in state_dict


def matches(fixture: dict) -> bool:
    """A fixture (or checkpoint config) of OpenTAD's ``TriDet``."""
    return (fixture.get('config') or {}).get('type') == 'TriDet'


def _sgp_key(prefix: str):
    """A rule for OpenTAD's SGPBlock keys under ``prefix``."""

    def rule(match):
        part, name = match.group(2), match.group(3)
        head = part.split('.')[0]
        ours = _SGP_NAMES.get(head, head) + part[len(head):]
        if head.startswith('drop_path'):
            return f'neck.{prefix}.{match.group(1)}.{ours}'
        return f'neck.{prefix}.{match.group(1)}.{ours}.{name}'

    return rule


def _rules() -> list:
    """``(pattern, replacement)`` pairs; a replacement may be a function of
    the match (``re.sub``'s function form)."""
    rules = [
        (r'projection\.embed\.(\d+)\.conv\.weight', r'neck.embed.\1.weight'),
        (r'projection\.embed\.(\d+)\.norm\.(weight|bias)',
         r'neck.embed_norms.\1.\2'),
        (r'projection\.stem\.(\d+)\.' + _SGP, _sgp_key('stem')),
        (r'projection\.branch\.(\d+)\.' + _SGP, _sgp_key('levels')),
        (r'neck\.fpn_norms\.(\d+)\.(weight|bias)', r'neck.out_norms.\1.\2'),
        (r'rpn_head\.loss_normalizer', 'head.loss_normalizer'),
        (r'rpn_head\.scale\.(\d+)\.scale', r'head.scales.\1.scale'),
    ]
    for theirs, ours in _HEAD_TOWERS.items():
        rules += [
            (rf'rpn_head\.{theirs}\.(\d+)\.conv\.weight',
             rf'head.{ours}.\1.0.weight'),
            (rf'rpn_head\.{theirs}\.(\d+)\.norm\.(weight|bias)',
             rf'head.{ours}.\1.1.\2')]
    rules += [(rf'rpn_head\.{theirs}\.(weight|bias)', rf'head.{ours}.\1')
              for theirs, ours in _HEAD_OUTS.items()]
    return rules


def reverse_start_bins(x: Tensor) -> Tensor:
    """Swap OpenTAD's and our order of the start bins along dim 0 (dim 1
    for a batched output ``(B, 2 * (num_bins + 1), T)``: use
    ``reverse_start_bins(x.transpose(0, 1)).transpose(0, 1)``): theirs
    channel ``j`` is distance ``num_bins - j``, ours ``j``. Its own
    inverse."""
    half = x.shape[0] // 2
    return torch.cat([x[:half].flip(0), x[half:]])


def convert_state_dict(
        state_dict: Mapping[str, Tensor]
) -> Tuple[Dict[str, Tensor], List[str]]:
    """OpenTAD ``projection.*`` / ``neck.*`` / ``rpn_head.*`` keys to our
    ``TemporalActionLocalizer``'s ``neck.*`` / ``head.*``; nothing dropped.

    Raises:
        UnplacedTensorError: A key of another architecture.
    """

    return map_keys(
        state_dict, _rules(),
        where='TriDet localizer (TriDetNeck + TriDetHead)',
        transform=lambda k, v: reverse_start_bins(v)
        if k.startswith('head.reg_out.') else v)


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise NotImplementedError(
            f'OpenTAD TriDet config: {what} has no counterpart in our '
            'TriDetNeck / TriDetHead')


def model_cfg(config: dict) -> dict:
    """``dict(neck=..., head=...)`` of our localizer computing OpenTAD's
    ``TriDet`` of ``config`` (its model config, ``type='TriDet'``).

    Raises:
        NotImplementedError: A setting we do not implement, named.
    """
    proj, fpn, head = config['projection'], config['neck'], config[
        'rpn_head']
    embed_convs, stem_blocks, branch_blocks = proj['arch']
    windows = list(proj['sgp_win_size'])
    _require(proj.get('downsample_type', 'max') == 'max',
             f"projection.downsample_type={proj.get('downsample_type')!r}")
    _require(not proj.get('use_abs_pe', False), 'projection.use_abs_pe')
    _require((proj.get('conv_cfg') or {}).get('kernel_size') == 3,
             'projection.conv_cfg.kernel_size other than 3')
    _require((proj.get('norm_cfg') or {}).get('type') == 'LN',
             'projection.norm_cfg other than LN')
    _require(len(set(windows[1:])) <= 1,
             f'projection.sgp_win_size={windows} (one window per level)')
    _require(fpn['type'] == 'FPNIdentity' and fpn.get('start_level', 0) == 0
             and fpn.get('end_level', -1) == -1,
             f"neck {fpn['type']} other than the full FPNIdentity")
    fpn_norm = (fpn.get('norm_cfg') or {'type': None}).get('type', 'LN') \
        if 'norm_cfg' in fpn else 'LN'
    _require(fpn_norm in ('LN', None), f'neck.norm_cfg={fpn_norm}')
    gen = head['prior_generator']
    _require(not gen.get('use_offset', False),
             'prior_generator.use_offset')
    _require(head.get('kernel_size', 3) == 3,
             'rpn_head.kernel_size other than 3')
    _require(head.get('center_sample', 'radius') == 'radius',
             f"rpn_head.center_sample={head.get('center_sample')!r}")
    _require(head.get('loss_weight', 1.0) == 1.0, 'rpn_head.loss_weight')
    _require(not head.get('label_smoothing', 0.),
             'rpn_head.label_smoothing')
    losses = {k: v['type'] for k, v in head['loss'].items()}
    _require(losses == dict(cls_loss='FocalLoss', reg_loss='DIOULoss',
                            iou_rate='GIOULoss'), f'rpn_head.loss={losses}')
    pdrop = proj.get('path_pdrop', 0.)
    neck = dict(
        type='TriDetNeck', in_channels=proj['in_channels'],
        embed_dims=proj['out_channels'], num_levels=branch_blocks + 1,
        num_embed_convs=embed_convs, num_stem_blocks=stem_blocks,
        stem_kernel_size=1, kernel_size=windows[1] if branch_blocks else 1,
        k=proj.get('k', 1.5), mlp_dims=proj['sgp_mlp_dim'], num_groups=16,
        drop_path=pdrop, layer_scale=1e-4 if pdrop > 0 else None,
        init_std=proj.get('init_conv_vars', 1),
        input_noise=proj.get('input_noise', 0.), out_norm=fpn_norm == 'LN',
        embed_bias=False, norm_eps=1e-6, pool_padding='-inf',
        padded_positions='computed')
    head_cfg = dict(
        type='TriDetHead', num_classes=head['num_classes'],
        in_channels=head['in_channels'],
        feat_channels=head['feat_channels'],
        num_convs=head.get('num_convs', 3), strides=list(gen['strides']),
        regress_ranges=[tuple(r) for r in gen['regression_range']],
        num_bins=head.get('num_bins', 16),
        boundary_kernel_size=head.get('boundary_kernel_size', 3),
        class_aware_boundaries=True, detach_boundary_feats=True,
        offset_relu=True,
        iou_weight_power=head.get('iou_weight_power', 0.2),
        center_sample_radius=head.get('center_sample_radius', 1.5),
        init_loss_norm=float(head.get('loss_normalizer', 100)),
        loss_norm_momentum=head.get('loss_normalizer_momentum', 0.9),
        prior_prob=head.get('cls_prior_prob', 0.01),
        padded_positions='computed', outside_neighbours='zero',
        tower_bias=False, norm_eps=1e-6, eval_reg_norm='count')
    return dict(neck=neck, head=head_cfg)


def build_model(fixture: dict, dtype=torch.float64):
    """Our localizer of the fixture's config with its converted weights
    (strict: every tensor of ours comes from the fixture). Stochastic depth
    is off when the fixture says OpenTAD's was (``meta``)."""
    cfg = copy.deepcopy(model_cfg(fixture['config']))
    if (fixture.get('meta') or {}).get('affine_droppath_drop_prob_set_to_0'):
        cfg['neck']['drop_path'] = 0.
    model = MODELS.build(dict(type='TemporalActionLocalizer', **cfg))
    model = model.to(dtype)
    ours, _ = convert_state_dict(fixture['state_dict'])
    model.load_state_dict(ours, strict=True)
    return model


def _eval_outputs(model, features: Tensor, masks: Tensor) -> dict:
    head, nb = model.head, model.head.num_bins
    feats, level_masks = model.neck(features, masks)
    cls, off, start, end = head.level_outputs(feats, level_masks)
    cls_outs, reg_outs = head(feats, level_masks)
    scores, segs, valid = head.decode(cls_outs, reg_outs, level_masks)
    B, P, K = features.shape[0], len(head.points(level_masks)), \
        head.num_classes
    return dict(
        neck_features=list(feats),
        cls_logits=cls,
        reg_offsets=[reverse_start_bins(o.transpose(0, 1)).transpose(0, 1)
                     for o in off],
        start_logits=start, end_logits=end,
        level_masks=list(level_masks),
        points=head.points(level_masks),
        decoded_offsets=head.distances(reg_outs).permute(0, 2, 1, 3),
        # class-aware: candidate p * K + c scored for class c only
        scores=scores.sum(-1).reshape(B, P, K) * valid.reshape(B, P, K),
        _proposals=[s[v] for s, v in zip(segs, valid)],
        _scores=[s[v] for s, v in zip(scores, valid)],
    ), nb


def _losses(model, fixture: dict, gt: dict, training: bool) -> dict:
    """Our losses of ``gt`` on the padded features in train / eval mode,
    the normaliser buffer reset first (as the fixture's)."""
    head = model.head
    model.train(training)
    head.loss_normalizer.fill_(float(gt['train' if training else 'eval'].get(
        'loss_normalizer_before', 100.)))
    with torch.no_grad():
        feats, masks = model.neck(fixture['features_padded'],
                                  fixture['masks_padded'])
        cls_outs, reg_outs = head(feats, masks)
        losses = head.loss(cls_outs, reg_outs, masks, gt['gt_segments'],
                           gt['gt_labels'])
        model.eval()
        same = all(torch.equal(a, b) for a, b in zip(
            cls_outs + reg_outs, sum(head(feats, masks), [])))
    points = head.points(masks)
    cls_t = torch.stack([head.assign(points, s, lab)[0]
                         for s, lab in zip(gt['gt_segments'],
                                           gt['gt_labels'])])
    num_pos = int(((cls_t.sum(-1) > 0) & torch.cat(masks, 1)).sum())
    return dict(cls_loss=losses['loss_cls'], reg_loss=losses['loss_reg'],
                cost=losses['loss_cls'] + losses['loss_reg'],
                loss_normalizer_after=float(head.loss_normalizer),
                num_pos=num_pos, preds_equal_eval_outputs=same)


def _targets(model, masks: List[Tensor], gt: dict) -> dict:
    """OpenTAD's ``prepare_targets`` layout: (B, P, K) and (B, P, 2)."""
    points = model.head.points(masks)
    cls_t, reg_t = zip(*(model.head.assign(points, s, lab)
                         for s, lab in zip(gt['gt_segments'],
                                           gt['gt_labels'])))
    return dict(targets_cls=torch.stack(cls_t).to(torch.float64),
                targets_reg=torch.stack(reg_t).to(torch.float64))


def run_fixture(fixture: dict) -> dict:
    """Our outputs on the fixture's weights and inputs, under its entry
    names (``eval``, ``gt.<name>.{train,eval}``, ``targets_cls``,
    ``post_processing``); reads no expected output."""
    model = build_model(fixture)
    model.eval()
    with torch.no_grad():
        out, _ = _eval_outputs(model, fixture['features'], fixture['masks'])
    proposals, scores = out.pop('_proposals'), out.pop('_scores')
    result = dict(eval=out, gt={})
    for name, gt in fixture.get('gt', {}).items():
        result['gt'][name] = dict(
            train=_losses(model, fixture, gt, True),
            eval=_losses(model, fixture, gt, False),
            **_targets(model, out['level_masks'], gt))
    post = fixture.get('post_processing')
    if post is not None:
        try:
            from .post_processing import run_post_processing
        except ImportError:  # the post-processing module is not there yet
            return result
        result['post_processing'] = run_post_processing(
            post['settings'], post['metas'], proposals, scores,
            fixture['class_names'])
    return result

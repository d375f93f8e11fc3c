"""An OpenTAD TAL checkpoint, converted, runs here as any other (issue 22,
must-show 2): ``tools/convert_opentad_checkpoint.py`` on the container of
``../shared/reference/opentad/re2tal_swin_tal_ckpt.pth``, then
``init_localizer``, ``mim test`` and ``localize_video`` with the tiny config
of its model (``tests/data/tiny_opentad_swin_actionformer_config.py``) on a
generated video; the checkpoint's meta makes them compute OpenTAD's
function."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from .conftest import OPENTAD_FIXTURES, REPO, shared_path
from .opentad_configs import actionformer_config

CONFIG = osp.join(REPO, 'tests', 'data',
                  'tiny_opentad_swin_actionformer_config.py')
TOOL = osp.join(REPO, 'tools', 'convert_opentad_checkpoint.py')
DEMO = osp.join(REPO, 'demo', 'localize_video.py')
FIXTURE = 're2tal_swin_tal_ckpt.pth'
BACKBONE_FIXTURE = 're2tal_swin.pth'  # the same Swin weights (README)
VIDEO = 'syn_0001'  # the validation video of the synthetic dataset
ENV = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
REVERSIBLE = {'mode': 'reversible'}
WARNING = '!' * 8  # RewiringMetaHook: trained as another function


def run(*args, cwd):
    return subprocess.run([str(a) for a in args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def tail(res):
    return res.stdout[-3000:] + res.stderr[-3000:]


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_opentad', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unrewired_config() -> Config:
    """The tiny config without its ``model.rewire``: only the checkpoint's
    meta says the backbone is reversible."""
    cfg = Config.fromfile(CONFIG)
    cfg.model.rewire = None
    return cfg


@pytest.fixture(scope='module')
def source():
    return shared_path(osp.join(OPENTAD_FIXTURES, FIXTURE))


@pytest.fixture(scope='module')
def converted(source, tmp_path_factory):
    """The fixture converted as a user does it (checked against the
    config)."""
    root = tmp_path_factory.mktemp('converted')
    dst = root / 'opentad_converted.pth'
    res = run(sys.executable, TOOL, source, dst, '--config', CONFIG,
              cwd=root)
    return dict(path=str(dst), result=res)


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """Two short synthetic videos: ``syn_0000`` (training) and
    ``syn_0001`` (validation, the one evaluated)."""
    from re2tal_mm.datasets.synthetic import make_synthetic_dataset
    root = str(tmp_path_factory.mktemp('opentad_data') / 'syn')
    make_synthetic_dataset(root, num_videos=2, num_classes=4, seed=0,
                           min_duration=10, max_duration=14)
    with open(osp.join(root, 'annotations.json')) as f:
        database = json.load(f)['database']
    assert database[VIDEO]['subset'] == 'validation'
    return dict(root=root, video=osp.join(root, 'videos', VIDEO + '.mp4'),
                duration=database[VIDEO]['duration'])


def mim_test(checkpoint, data_root, work_dir, *options):
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    return run(mim, 'test', 'mmaction2', CONFIG, '--checkpoint', checkpoint,
               '--work-dir', work_dir, '--cfg-options',
               f'data_root={data_root}', *options, cwd=work_dir)


@pytest.fixture(scope='module')
def mim_run(converted, synthetic, tmp_path_factory):
    """``mim test`` of the converted checkpoint, its merged detections
    dumped by ``TALMetric(out_file=...)``."""
    work = tmp_path_factory.mktemp('mim')
    dump = work / 'detections.json'
    res = mim_test(converted['path'], synthetic['root'], work,
                   f'test_evaluator.out_file={dump}')
    assert res.returncode == 0, tail(res)
    with open(dump) as f:
        return dict(result=res, results=json.load(f)['results'])


#: the detector of the fixture (README): the Re2TAL THUMOS ActionFormer
#: (``e2e_thumos_re2tal_actionformer_swin_tiny.py`` over OpenTAD's
#: ``_base_/models/actionformer.py``) at projection in_channels 64, width
#: 32; ``max_seq_len``: the detector length (the window), 32 here
OPENTAD_DETECTOR = actionformer_config(64, width=32, max_seq_len=32)
#: the Re2TAL THUMOS post_processing; OpenTAD's test sets sliding_window
#: for its sliding-window dataset
OPENTAD_POST_PROCESSING = dict(
    nms=dict(use_soft_nms=True, sigma=0.7, max_seg_num=2000, min_score=0.001,
             multiclass=True, voting_thresh=0.7), sliding_window=True)


def plain(obj):
    """Tuples as lists, Config dicts as dicts (to compare configs)."""
    return json.loads(json.dumps(obj))


def test_tiny_config_is_the_fixtures_model():
    """The hand-written config holds what ``re2tal_mm.apis.opentad`` gives
    for the checkpoint's model (so the converted file computes OpenTAD's
    function with it)."""
    from re2tal_mm.apis.opentad import actionformer, post_processing, swin
    constructor = torch.load(
        shared_path(osp.join(OPENTAD_FIXTURES, BACKBONE_FIXTURE)),
        map_location='cpu', weights_only=True)['constructor']
    cfg = Config.fromfile(CONFIG)
    expected = dict(swin.model_cfg(constructor),
                    **actionformer.model_cfg(OPENTAD_DETECTOR))
    pp = post_processing.post_processing_cfg(OPENTAD_POST_PROCESSING)
    for key, value in expected.items():
        assert plain(cfg.model[key]) == plain(value), key
    assert plain(cfg.model.post_processor) == plain(pp['post_processor'])
    metric = {k: v for k, v in cfg.test_evaluator.items()
              if k not in ('type', 'subset', 'tiou_thresholds')}
    assert plain(metric) == plain(pp['metric'])
    assert cfg.model.feat_len == cfg.model.neck.max_seq_len == 32
    assert cfg.model.spatial_pool == 'avg' and cfg.model.frozen_backbone_norms


# ------------------------------------------------------------ converter
def test_convert_script(converted):
    res = converted['result']
    assert res.returncode == 0, tail(res)
    assert 'state_dict_ema' in res.stdout
    assert 'mapped 413 tensors' in res.stdout
    assert 'not carried over (training state): optimizer, scheduler' \
        in res.stdout
    assert 'loads strictly into the model of' in res.stdout
    ckpt = torch.load(converted['path'], weights_only=True)
    assert set(ckpt) == {'meta', 'state_dict'}  # no optimizer / scheduler
    assert len(ckpt['state_dict']) == 413
    meta = ckpt['meta']
    assert meta['re2tal_rewiring'] == REVERSIBLE
    opentad = meta['re2tal_opentad']
    assert opentad['kinds'] == dict(backbone='swin', detector='actionformer')
    assert opentad['state_dict'] == 'state_dict_ema'
    assert opentad['epoch'] == 40


def _variant(source, path, edit):
    ckpt = torch.load(source, weights_only=True)
    ckpt['state_dict_ema'] = dict(ckpt['state_dict_ema'])
    edit(ckpt)
    torch.save(ckpt, path)
    return str(path)


def test_convert_stops_on_unplaced_tensor(source, tmp_path, capsys):
    name = 'module.rpn_head.extra_branch.weight'

    def add(ckpt):
        ckpt['state_dict_ema'][name] = torch.zeros(3)

    src = _variant(source, tmp_path / 'extra.pth', add)
    dst = tmp_path / 'out.pth'
    assert load_tool().main([src, str(dst)]) == 1
    err = capsys.readouterr().err
    assert 'rpn_head.extra_branch.weight' in err
    assert not dst.exists()


def test_convert_no_ema_takes_state_dict(source, tmp_path, capsys):
    key = 'module.rpn_head.cls_head.bias'

    def differ(ckpt):  # EMA and raw weights apart in one tensor
        ckpt['state_dict_ema'][key] = ckpt['state_dict'][key] + 1

    src = _variant(source, tmp_path / 'ema.pth', differ)
    raw = torch.load(src, weights_only=True)
    tool = load_tool()
    for args, taken in (([], 'state_dict_ema'), (['--no-ema'], 'state_dict')):
        dst = tmp_path / f'{taken}.pth'
        assert tool.main([src, str(dst), *args]) == 0
        assert f'read {src}: {taken}' in capsys.readouterr().out
        ours = torch.load(dst, weights_only=True)
        assert ours['meta']['re2tal_opentad']['state_dict'] == taken
        assert torch.equal(ours['state_dict']['head.cls_out.bias'],
                           raw[taken][key])


# ------------------------------------------------------- init_localizer
def test_converted_backbone_is_opentads(converted):
    """converter -> meta -> init_localizer: the backbone computes OpenTAD's
    ``SwinTransformer3D_inv`` (re2tal_swin.pth's output, float64), also
    when the config does not rewire it (the meta does); run un-rewired it
    computes another function."""
    from re2tal_mm.apis import init_localizer
    from re2tal_mm.rewiring import rewiring_spec
    fixture = torch.load(
        shared_path(osp.join(OPENTAD_FIXTURES, BACKBONE_FIXTURE)),
        map_location='cpu', weights_only=True)
    ckpt = converted['path']
    torch.set_default_dtype(torch.float64)  # float64 weights, loaded exact
    try:
        models = dict(
            config=init_localizer(CONFIG, ckpt),
            meta=init_localizer(unrewired_config(), ckpt),
            unrewired=init_localizer(CONFIG, ckpt, rewiring=False))
    finally:
        torch.set_default_dtype(torch.float32)
    diffs = {}
    for name, model in models.items():
        assert next(model.parameters()).dtype == torch.float64
        with torch.no_grad():
            out = model.backbone(fixture['input'])
        out = out[0] if isinstance(out, (tuple, list)) else out
        assert out.shape == fixture['output'].shape
        diffs[name] = (out - fixture['output']).abs().max().item()
    assert rewiring_spec(models['meta']) == REVERSIBLE
    assert rewiring_spec(models['unrewired']) is None
    assert diffs['config'] < 1e-10 and diffs['meta'] < 1e-10, diffs
    assert diffs['unrewired'] > 0.1, diffs


# ------------------------------------------------------------- mim test
def test_mim_test(mim_run, synthetic):
    log = mim_run['result'].stdout + mim_run['result'].stderr
    assert 'RewiringMetaHook: the backbone is rewired reversible' in log
    assert WARNING not in log
    assert 'loading the backbone: 183/183 tensors' in log
    assert 'tal/average_mAP' in log and 'mAP ' in log  # the table
    assert list(mim_run['results']) == [VIDEO]
    dets = mim_run['results'][VIDEO]
    assert dets
    for d in dets:
        s, e = d['segment']
        assert 0 <= s <= e <= synthetic['duration']
        assert d['label'] in [f'class_{i}' for i in range(20)]


def test_mim_test_warns_when_run_as_another_function(converted, synthetic,
                                                     tmp_path):
    res = mim_test(converted['path'], synthetic['root'], tmp_path,
                   'model.rewire=None')
    assert res.returncode == 0, tail(res)
    log = res.stdout + res.stderr
    assert 'RewiringMetaHook: the backbone is not rewired' in log
    assert f'{WARNING} the loaded checkpoint was trained rewired ' \
        'reversible, but this model is not rewired' in log


# -------------------------------------------------------- localize_video
def test_localize_video_equals_mim_test(converted, synthetic, mim_run,
                                        tmp_path):
    """One model, one truth: ``localize_video`` (the config without
    ``rewire``: the meta rewires) and ``demo/localize_video.py`` give the
    detections ``mim test`` dumped for the video, the zero-length segments
    too (windows reaching before the video, clipped to [0, 0] before the NMS
    and kept, as OpenTAD does: ``drop_empty=False`` in this config)."""
    from re2tal_mm.apis import init_localizer, localize_video
    from re2tal_mm.rewiring import rewiring_spec
    model = init_localizer(unrewired_config(), converted['path'])
    assert rewiring_spec(model) == REVERSIBLE
    result = localize_video(model, synthetic['video'], progress=False)
    assert result['video_id'] == VIDEO
    assert result['duration'] == pytest.approx(synthetic['duration'])
    dumped = mim_run['results'][VIDEO]
    assert result['results'] == dumped
    kept = [d for d in dumped if d['segment'][1] > d['segment'][0]]
    assert len(kept) > 100 and len(kept) < len(dumped)

    out = tmp_path / 'result.json'
    res = run(sys.executable, DEMO, synthetic['video'], CONFIG,
              converted['path'], '--out', out, '--score-thr', 0,
              '--max-segments', len(dumped), cwd=tmp_path)
    assert res.returncode == 0, tail(res)
    with open(out) as f:
        assert json.load(f)['results'] == {VIDEO: dumped}

"""Every command of README.md and configs/re2tal/README.md runs as written.

The fenced ``bash`` / ``shell`` blocks of both READMEs are split into
commands (``#`` comments dropped, ``\\`` continuations joined). Each command
must match exactly one rule of :data:`RULES`:

* a rule that runs it: in a temporary folder holding copies of ``configs/``,
  ``tools/`` and ``demo/`` (so nothing is written into the repository), with
  the venv's ``python``, ``mim`` and ``torchrun`` first on ``PATH``, after
  the substitutions of :data:`PLACEHOLDERS` (the READMEs' stand-ins for the
  user's files: ``CONFIG``, ``CHECKPOINT``, ``val_Annotation.csv``...) and of
  :data:`SMALLER` (sizes: 3 synthetic videos, 1 epoch), plus the rule's own
  ``extra`` arguments, each with its reason;
* or a rule that lists it as not run, with the reason.

A README command that no rule knows, or that two rules claim, fails
:func:`test_every_readme_command_is_known`, so the docs cannot drift from what
is run. ``python <script>.py`` commands run in this process (``runpy``, the
same script and argv; it saves an interpreter start per command), the others
(``mim``, ``torchrun``) in a shell. Commands that read the real annotation
files of ``../shared/data`` are skipped (cleanly) without it.
"""
import os
import os.path as osp
import re
import runpy
import shutil
import subprocess
import sys
import time
from typing import List, NamedTuple, Optional

import pytest

from .conftest import REPO, SHARED_DATA, free_port

READMES = ('README.md', osp.join('configs', 're2tal', 'README.md'))
DEMO = 'configs/re2tal/re2tal_swin-demo-p244-w877_1xb2-40e_synthetic-64x64.py'
THUMOS = osp.join(SHARED_DATA, 'thumos-14')
ANET = osp.join(SHARED_DATA, 'activitynet-1.3')

#: The READMEs' stand-ins (whole tokens) -> what the test uses.
PLACEHOLDERS = {
    # the user's copies of the source annotation files
    'val_Annotation.csv': osp.join(THUMOS, 'val_Annotation.csv'),
    'test_Annotation.csv': osp.join(THUMOS, 'test_Annotation.csv'),
    'thumos14_test_groundtruth.csv': osp.join(
        THUMOS, 'thumos14_test_groundtruth.csv'),
    'anet_anno_action.json': osp.join(ANET, 'anet_anno_action.json'),
    'video_info_new.csv': osp.join(ANET, 'video_info_new.csv'),
    # an ActivityNet results file: the real one of the ActivityNet repo
    'results.json': osp.join(ANET, 'sample_detection_prediction.json'),
    # "any config / its checkpoint / your video": the demo run's
    'CONFIG': DEMO,
    'CHECKPOINT': 'work_dirs/demo_run/epoch_1.pth',
    'my_video.mp4': 'data/my_synthetic/videos/syn_0002.mp4',
}

#: Sizes made smaller (whole tokens): 3 videos (2 training, 1 validation),
#: batch 2, so one epoch is one iteration.
SMALLER = {
    '--videos 24': '--videos 3',
    'train_cfg.max_epochs=5': 'train_cfg.max_epochs=1',
    'epoch_5.pth': 'epoch_1.pth',
}


class Rule(NamedTuple):
    """How the test treats the README commands that match ``pattern``.

    Args:
        pattern (str): Regular expression matched against the whole
            command (``re.fullmatch``).
        group (str): ``'synthetic'`` (run on the generated dataset),
            ``'shared'`` (needs ``../shared/data``) or ``'not run'``.
        reason (str): Why not run, or what the extra arguments are for.
        extra (tuple): Arguments appended to the command.
        background (bool): It needs only the first command of its group
            (the dataset): started right after that one, in the background,
            and waited for at the end of the group.
    """
    pattern: str
    group: str
    reason: str = ''
    extra: tuple = ()
    background: bool = False


SYN = 'data/my_synthetic'
RULES = [
    # ---- the two commands ------------------------------------------------
    Rule(r'make demo', 'not run',
         'the full demo, about 14 min on 2 cores: its mim train / mim test '
         'commands are the synthetic ones run here'),
    Rule(r'make test', 'not run', 'the whole suite, this test included'),
    # ---- the synthetic run-through (README.md) ---------------------------
    Rule(r'python tools/data/make_synthetic_dataset\.py --out '
         r'data/my_synthetic --videos \d+', 'synthetic'),
    Rule(r'mim train mmaction2 configs/re2tal/re2tal_swin-demo-\S+ --gpus 0 '
         r'--work-dir work_dirs/demo_run --cfg-options '
         r'data_root=data/my_synthetic train_cfg\.max_epochs=\d+',
         'synthetic'),
    Rule(r'mim test mmaction2 configs/re2tal/re2tal_swin-demo-\S+ --gpus 0 '
         r'--checkpoint work_dirs/demo_run/epoch_\d+\.pth --work-dir '
         r'work_dirs/demo_run --cfg-options data_root=data/my_synthetic '
         r'test_evaluator\.out_file=work_dirs/demo_run/results\.json',
         'synthetic'),
    Rule(r'python tools/eval_detection\.py data/my_synthetic/annotations\.json'
         r' work_dirs/demo_run/results\.json', 'synthetic'),
    Rule(r'torchrun --nproc_per_node=2 \$\(python -c .*\)/\.mim/tools/'
         r'train\.py configs/re2tal/re2tal_swin-demo-\S+ --launcher pytorch '
         r'--work-dir work_dirs/demo_ddp --cfg-options '
         r'data_root=data/my_synthetic train_cfg\.max_epochs=\d+',
         'synthetic', 'a free --master_port (another run may hold 29500; '
         'inserted after torchrun) and --no-validate (the last epoch would '
         'validate again, as mim test does above)',
         extra=('--no-validate', ), background=True),
    # ---- THUMOS-14 / ActivityNet-1.3 (README.md, configs/re2tal) ---------
    Rule(r'python tools/data/convert_thumos\.py data/thumos14/thumos14_gt\.'
         r'json --val val_Annotation\.csv --test test_Annotation\.csv '
         r'--groundtruth thumos14_test_groundtruth\.csv', 'shared'),
    Rule(r'python tools/data/convert_activitynet\.py anet_anno_action\.json '
         r'video_info_new\.csv data/activitynet/anet1\.3_gt\.json', 'shared'),
    Rule(r'python tools/eval_detection\.py data/activitynet/anet1\.3_gt\.json'
         r' results\.json', 'shared'),
    Rule(r'python demo/localize_video\.py my_video\.mp4 CONFIG CHECKPOINT '
         r'--out result\.json --plot timeline\.png', 'synthetic'),
    Rule(r'mim (train|test) mmaction2 configs/re2tal/re2tal_\S+_'
         r'(thumos14|anet1\.3)\.py .*', 'not run',
         'a paper config: needs the THUMOS-14 / ActivityNet videos, a '
         'Kinetics-400 checkpoint and a GPU; tests/test_configs.py trains '
         'each config one iteration on a shrunk copy, tests/test_data_root.py '
         'checks the data_root override'),
    Rule(r'python tools/convert_opentad_checkpoint\.py \S+\.pth \S+\.pth '
         r'--config configs/re2tal/\S+\.py', 'not run',
         'needs a checkpoint trained with OpenTAD; '
         'tests/test_opentad_checkpoint.py converts the OpenTAD fixture '
         'container with --config and runs mim test and localize_video on '
         'the result'),
    Rule(r'mim train mmaction2 CONFIG --resume', 'not run',
         'tests/test_resume.py resumes the demo config with mim train '
         '--resume'),
    Rule(r'mim train mmaction2 my_swin_config\.py --gpus 0 --cfg-options '
         r'optim_wrapper\.type=OptimWrapper model\.backbone\.pretrained=None '
         r'model\.backbone\.pretrained2d=False load_from=\S+', 'not run',
         'a stock Kinetics config: needs Kinetics videos and the checkpoint; '
         'tests/test_cpu_offline.py trains the stock Swin config one '
         'iteration on CPU with exactly these overrides'),
    Rule(r'mim download mmaction2 --config \S+ --dest checkpoints', 'not run',
         'needs the network (no network at test time)'),
    Rule(r'mim train mmaction2 CONFIG --launcher pytorch --gpus 8', 'not run',
         'needs 8 GPUs; the same wrapper trains on 2 CPU processes in the '
         'torchrun command'),
]


def readme_commands() -> List[tuple]:
    """``(readme, command)`` for every command of the READMEs' bash /
    shell blocks, in order."""
    found = []
    for name in READMES:
        with open(osp.join(REPO, name), encoding='utf-8') as f:
            text = f.read()
        for block in re.findall(r'^```(?:bash|shell|sh)\n(.*?)^```', text,
                                re.M | re.S):
            pending = ''
            for line in block.splitlines():
                line = re.sub(r'\s+#.*$', '', line) if \
                    not line.lstrip().startswith('#') else ''
                line = line.strip()
                if not line:
                    continue
                if line.endswith('\\'):
                    pending += line[:-1].strip() + ' '
                    continue
                found.append((name, pending + line))
                pending = ''
            assert not pending, f'{name}: dangling continuation {pending!r}'
    return found


def rule_of(command: str) -> Rule:
    """The one rule matching ``command`` (AssertionError otherwise)."""
    rules = [r for r in RULES if re.fullmatch(r.pattern, command)]
    assert len(rules) == 1, (
        f'{len(rules)} rules of tests/test_readme_commands.py match the '
        f'README command {command!r}: add one (run it, or say why not)')
    return rules[0]


def substitute(command: str) -> str:
    """``command`` with :data:`SMALLER` and :data:`PLACEHOLDERS` (whole
    tokens only: ``results.json`` but not ``work_dirs/.../results.json``)
    applied."""
    for key, value in SMALLER.items():
        command = command.replace(key, value)
    for key, value in PLACEHOLDERS.items():
        command = re.sub(r'(?<![\w/.$-])' + re.escape(key) + r'(?![\w/.-])',
                         lambda _: value, command)
    return command


def test_every_readme_command_is_known():
    commands = readme_commands()
    assert len(commands) >= 10, commands
    for _, command in commands:
        rule_of(command)
    # every rule is still used: a rule for a command the READMEs dropped
    # would hide a typo in its replacement
    used = {rule_of(c) for _, c in commands}
    assert not [r.pattern for r in RULES if r not in used]
    # each not-run command has a reason
    assert all(r.reason for r in RULES if r.group == 'not run')


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder with copies of configs/, tools/ and demo/, as cwd; the
    venv's executables first on PATH."""
    for folder in ('configs', 'tools', 'demo'):
        shutil.copytree(osp.join(REPO, folder), tmp_path / folder,
                        ignore=shutil.ignore_patterns('__pycache__'))
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               MKL_NUM_THREADS='1',
               PATH=os.pathsep.join([osp.dirname(sys.executable),
                                     os.environ.get('PATH', '')]))
    return tmp_path, env


def run_in_process(argv: List[str]) -> None:
    """``python script.py args...`` in this interpreter."""
    old = sys.argv
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name='__main__')
    except SystemExit as err:
        assert err.code in (None, 0), f'{" ".join(argv)}: exit {err.code}'
    finally:
        sys.argv = old


def shell_command(command: str, rule: Rule) -> str:
    command = ' '.join([command, *rule.extra])
    if command.startswith('torchrun '):
        command = command.replace(
            'torchrun ', 'torchrun --master_addr=127.0.0.1 '
            f'--master_port={free_port()} ', 1)
    return command


def run_group(group: str, env: dict, log) -> List[str]:
    """Run the READMEs' commands of ``group`` in order; return them as
    run."""
    commands = []
    for _, written in readme_commands():
        rule = rule_of(written)
        if rule.group == group and written not in [c for c, _ in commands]:
            commands.append((written, rule))  # in both READMEs: run once
    ran, background = [], []
    for i, (written, rule) in enumerate(commands):
        if rule.background:
            continue
        command = substitute(written)
        start = time.perf_counter()
        if command.startswith('python ') and '$(' not in command and \
                not rule.extra:
            run_in_process(command.split()[1:])
        else:
            command = shell_command(command, rule)
            _wait(command, subprocess.Popen(
                ['bash', '-c', command], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True))
        log.append(f'{time.perf_counter() - start:6.1f} s  {command}')
        ran.append(command)
        if i == 0:  # the dataset exists: start the background commands
            for later, later_rule in commands:
                if later_rule.background:
                    command = shell_command(substitute(later), later_rule)
                    background.append((command, subprocess.Popen(
                        ['bash', '-c', command], env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True), time.perf_counter()))
                    ran.append(command)
    for command, proc, start in background:
        _wait(command, proc)
        log.append(f'{time.perf_counter() - start:6.1f} s  {command} '
                   '(in the background)')
    return ran


def _wait(command: str, proc: subprocess.Popen,
          timeout: Optional[float] = 300) -> None:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f'{command} did not finish in {timeout} s:\n'
                    f'{out[-3000:]}')
    assert proc.returncode == 0, f'{command} failed:\n{out[-5000:]}'


def test_synthetic_commands_run(workspace, capsys):
    """The run-through on the synthetic dataset: generate, train (mim and
    torchrun, 2 CPU processes), test, score the results file, localize."""
    tmp, env = workspace
    log = []
    ran = run_group('synthetic', env, log)
    out = capsys.readouterr().out
    print('\n'.join(log))  # seconds per command (shown with -rP)
    assert any(c.startswith('torchrun') for c in ran)
    # the documented override moved the data: nothing read data/synthetic
    assert not (tmp / 'data' / 'synthetic').exists()
    assert (tmp / 'work_dirs' / 'demo_run' / 'epoch_1.pth').exists()
    assert (tmp / 'work_dirs' / 'demo_ddp' / 'epoch_1.pth').exists()
    assert (tmp / 'work_dirs' / 'demo_run' / 'results.json').exists()
    assert (tmp / 'result.json').exists() and (tmp / 'timeline.png').exists()
    assert 'average mAP' in out  # tools/eval_detection.py


def test_shared_data_commands_run(shared_data, workspace, capsys):
    """The converters on the real annotation files write where the configs
    read (and say what they assumed); the converted ActivityNet ground
    truth scores the ActivityNet repository's results file."""
    tmp, env = workspace
    log = []
    run_group('shared', env, log)
    out = capsys.readouterr().out
    print('\n'.join(log))
    assert (tmp / 'data' / 'thumos14' / 'thumos14_gt.json').exists()
    assert (tmp / 'data' / 'activitynet' / 'anet1.3_gt.json').exists()
    assert 'ASSUMED for 200' in out  # the THUMOS validation videos
    assert 'average mAP' in out


def test_adapter_example_in_docs_is_the_x3d_adapter():
    """``docs/backbones.md`` shows ``rewiring/x3d.py`` (without its module
    docstring) as the worked example: the two stay the same text."""
    import ast
    with open(osp.join(REPO, 're2tal_mm', 'rewiring', 'x3d.py')) as f:
        source = f.read()
    start = ast.parse(source).body[0].end_lineno
    code = '\n'.join(source.splitlines()[start:]).strip('\n')
    with open(osp.join(REPO, 'docs', 'backbones.md')) as f:
        docs = f.read()
    section = docs[docs.index('## Adding an adapter'):]
    example = section.split('```python\n', 1)[1].split('```', 1)[0]
    assert example.strip('\n') == code

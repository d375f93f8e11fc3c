"""The import graph of the package against DESIGN.md's layer table.

Every module of ``re2tal_mm/`` is parsed (``ast``: imports inside functions
count too) and each import of another layer of the package must be one the
table lets it make; ``reversible/`` imports no OpenMMLab package at all, and
the command-line tools never import ``tests``.
"""
import ast
import os.path as osp
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

from .conftest import REPO

PACKAGE = 're2tal_mm'
#: ``import re2tal_mm`` (or ``from re2tal_mm import x`` of a name that is not
#: a layer): the package root, which imports (registers) every layer
ROOT = '<package root>'
BELOW_APIS = {'models', 'datasets', 'evaluation', 'structures', 'rewiring',
              'reversible'}
#: DESIGN.md's layers: the other layers each may import (imports point down)
ALLOWED: Dict[str, Set[str]] = {
    '__init__': {'compat', 'version', 'apis', 'engine', 'testing'}
    | BELOW_APIS,
    # registers the components through ``import re2tal_mm``; takes the
    # rewiring spec policy from rewiring/, never from the hooks of engine/
    'apis': {ROOT, 'compat'} | BELOW_APIS,
    # helpers shared by tests and tools (toy data, predict_video)
    'testing': {ROOT} | BELOW_APIS,
    # runner integration: the rewiring hooks, the DDP wrapper, and the
    # data_root runner, which fills the data_root of TALDataset configs
    'engine': {'rewiring', 'reversible', 'datasets'},
    'models': {'structures', 'rewiring', 'reversible'},
    'datasets': {'structures'},
    # the metric knows segments, not datasets
    'evaluation': {'structures'},
    'structures': set(),
    'rewiring': {'reversible'},
    'reversible': set(),
    'compat': set(),
    'version': set(),
}
#: layers that import no OpenMMLab package (pure PyTorch)
NO_OPENMMLAB = {'reversible'}


def imported_modules(path: Path, package: List[str]
                     ) -> Iterator[Tuple[int, str]]:
    """``(line, dotted name)`` of each import in ``path``, relative imports
    resolved against ``package`` (the parts of the module's package);
    ``from a import b`` yields ``a.b`` (``b`` may be a submodule)."""
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split('.') if node.module else []
            if node.level:
                base = package[:len(package) - node.level + 1] + base
            for alias in node.names:
                yield node.lineno, '.'.join(base + [alias.name])


def layer_of(dotted: str) -> str:
    """The layer of ``re2tal_mm.<layer>...``; :data:`ROOT` for the package
    itself or a name of it that is not a layer."""
    parts = dotted.split('.')
    if len(parts) > 1 and parts[1] in ALLOWED and parts[1] != '__init__':
        return parts[1]
    return ROOT


def layer_violations(repo: str) -> List[str]:
    """Imports of the package under ``repo`` that DESIGN's table forbids,
    one line each (``file:line: layer imports name``)."""
    violations = []
    root = Path(repo) / PACKAGE
    for path in sorted(root.rglob('*.py')):
        rel = path.relative_to(repo)
        parts = list(rel.with_suffix('').parts)
        package = parts[:-1]
        layer = parts[1]
        if layer not in ALLOWED:
            violations.append(f'{rel}: layer {layer!r} is not in the table '
                              '(add it to DESIGN.md and ALLOWED)')
            continue
        for line, name in imported_modules(path, package):
            top = name.split('.')[0]
            if top.startswith('mm') and layer in NO_OPENMMLAB:
                violations.append(f'{rel}:{line}: {layer} imports {name} '
                                  '(no OpenMMLab imports)')
            if top != PACKAGE:
                continue
            target = layer_of(name)
            if target != layer and target not in ALLOWED[layer]:
                allowed = ', '.join(sorted(ALLOWED[layer])) or 'nothing'
                violations.append(f'{rel}:{line}: {layer} imports {name} '
                                  f'(it may import: {allowed})')
    return violations


def test_table_is_closed():
    """Every layer a layer may import is a layer of the table."""
    for layer, allowed in ALLOWED.items():
        assert allowed <= set(ALLOWED) | {ROOT}, (layer, allowed)


def test_imports_point_down():
    violations = layer_violations(REPO)
    assert not violations, '\n'.join(violations)


def tools_importing_tests(repo: str) -> List[str]:
    """Imports of ``tests`` in ``tools/`` and ``demo/``."""
    found = []
    for folder in ('tools', 'demo'):
        for path in sorted(Path(repo, folder).rglob('*.py')):
            for line, name in imported_modules(path, []):
                if name.split('.')[0] == 'tests':
                    found.append(f'{path.relative_to(repo)}:{line}: {name}')
    return found


def test_tools_do_not_import_tests():
    found = tools_importing_tests(REPO)
    assert not found, '\n'.join(found)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checks_fail_on_violations(tmp_path):
    """The checks find each kind of violation (so they can fail)."""
    for layer in ('evaluation', 'datasets', 'apis', 'engine', 'reversible',
                  'rewiring', 'models'):
        _write(tmp_path, f'{PACKAGE}/{layer}/__init__.py', '')
    _write(tmp_path, f'{PACKAGE}/__init__.py', 'from . import apis\n')
    _write(tmp_path, f'{PACKAGE}/evaluation/metric.py',
           'from ..datasets import annotations\n')
    _write(tmp_path, f'{PACKAGE}/apis/inference.py',
           'def f():\n    from re2tal_mm.engine.meta import choose\n')
    _write(tmp_path, f'{PACKAGE}/reversible/function.py',
           'import torch\nfrom mmengine.model import BaseModule\n'
           'from .. import rewiring\n')
    _write(tmp_path, f'{PACKAGE}/rewiring/rewire.py',
           'from ..models.localizer import Localizer\n')
    _write(tmp_path, f'{PACKAGE}/models/localizer.py',
           'from re2tal_mm.apis import init_localizer\n'
           'from ..rewiring import rewire\n')  # allowed
    _write(tmp_path, f'{PACKAGE}/newlayer/__init__.py', '')
    found = layer_violations(str(tmp_path))
    expected = [
        ('apis/inference.py:2', 're2tal_mm.engine.meta'),
        ('evaluation/metric.py:1', 're2tal_mm.datasets.annotations'),
        ('models/localizer.py:1', 're2tal_mm.apis.init_localizer'),
        ('newlayer/__init__.py', "'newlayer' is not in the table"),
        ('reversible/function.py:2', 'mmengine.model.BaseModule'),
        ('reversible/function.py:3', 're2tal_mm.rewiring'),
        ('rewiring/rewire.py:1', 're2tal_mm.models.localizer'),
    ]
    assert len(found) == len(expected), '\n'.join(found)
    for line, (where, what) in zip(found, expected):
        assert line.startswith(osp.join(PACKAGE, where)) and what in line, (
            line, where, what)
    _write(tmp_path, 'tools/analysis/tool.py',
           'import sys\nfrom tests.test_localizer import make_video\n')
    assert tools_importing_tests(str(tmp_path)) == [
        'tools/analysis/tool.py:2: tests.test_localizer.make_video']

"""One config key for the data folder: ``data_root``.

MMEngine applies ``--cfg-options`` after a config file has been executed, so
a top-level variable such as ``data_root`` that the file used in f-strings
has already been copied into every dataloader: overriding it changes nothing.
Our configs therefore give their datasets paths *relative to* ``data_root``
(``ann_file``, ``data_prefix``) and leave the datasets' own ``data_root``
unset; :class:`DataRootRunner` (``runner_type = 'DataRootRunner'``) hands
the top-level ``data_root`` to every :class:`TALDataset` of the config when
the Runner is built, i.e. after ``--cfg-options``, and ``TALMetric`` (no
``ann_file`` given) reads the ground truth of the dataset it evaluates.
So one key moves all the data::

    mim train mmaction2 CONFIG --cfg-options data_root=/data/thumos14

A dataset that sets its own ``data_root`` keeps it, and an absolute
``ann_file`` or ``data_prefix`` ignores ``data_root`` (MMEngine's rule), so one
dataloader can still read elsewhere. A script that builds datasets from a
config without the Runner calls :func:`apply_data_root` first.
"""
import copy
from typing import List, Optional

from mmengine.registry import RUNNERS as ENGINE_RUNNERS
from mmengine.runner import Runner

from mmaction.registry import DATASETS, RUNNERS
from ..datasets import TALDataset

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _is_tal_dataset(dataset_type) -> bool:
    """Whether a dataset config's ``type`` is ``TALDataset`` or a
    subclass."""
    if isinstance(dataset_type, str):
        try:
            dataset_type = DATASETS.get(dataset_type)
        except KeyError:  # a scope that is not imported: not ours
            return False
    return isinstance(dataset_type, type) and issubclass(
        dataset_type, TALDataset)


def _fill(dataset: dict, root: str, where: str, filled: List[str]) -> None:
    """Give ``root`` to ``dataset`` and the datasets it wraps."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('dataset'), dict):  # RepeatDataset & co.
        _fill(dataset['dataset'], root, f'{where}.dataset', filled)
    for i, inner in enumerate(dataset.get('datasets') or []):  # Concat
        _fill(inner, root, f'{where}.datasets.{i}', filled)
    if _is_tal_dataset(dataset.get('type')) and \
            dataset.get('data_root') is None:
        dataset['data_root'] = root
        filled.append(where)


def apply_data_root(cfg, data_root: Optional[str] = None) -> List[str]:
    """Give the config's ``data_root`` to each ``TALDataset`` of its
    dataloaders, in place.

    Args:
        cfg (Config | dict): The config, ``--cfg-options`` already merged.
        data_root (str, optional): The folder. Defaults to None (the
            config's top-level ``data_root``; nothing is done without one).

    Returns:
        list[str]: The datasets that got it, e.g.
        ``['train_dataloader.dataset', 'val_dataloader.dataset']``. Those
        that set their own ``data_root`` are left as they are.
    """
    root = data_root if data_root is not None else cfg.get('data_root')
    filled: List[str] = []
    if not root:
        return filled
    for key in DATALOADERS:
        loader = cfg.get(key)
        if isinstance(loader, dict):
            _fill(loader.get('dataset'), str(root), f'{key}.dataset', filled)
    return filled


@RUNNERS.register_module()
@ENGINE_RUNNERS.register_module()
class DataRootRunner(Runner):
    """``Runner`` whose config's top-level ``data_root`` is the data folder.

    Selected by ``runner_type = 'DataRootRunner'`` (MMAction2's
    ``tools/train.py`` and ``tools/test.py``, so ``mim train`` / ``mim test``,
    build ``RUNNERS.build(cfg)`` when a config has ``runner_type``). Before
    building, :func:`apply_data_root` gives ``cfg.data_root`` to every
    ``TALDataset`` that does not set its own; the log says which.
    Everything else is MMEngine's ``Runner``.
    """

    @classmethod
    def from_cfg(cls, cfg) -> 'DataRootRunner':
        """Build the runner from ``cfg`` with ``data_root`` applied."""
        cfg = copy.deepcopy(cfg)
        filled = apply_data_root(cfg)
        runner = super().from_cfg(cfg)
        if filled:
            runner.logger.info(f'data_root {cfg.data_root!r} given to '
                               f'{", ".join(filled)}')
        return runner

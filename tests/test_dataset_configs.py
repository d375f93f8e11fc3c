"""The dataset configs (configs/re2tal/datasets/) build and train one
iteration at reduced size, exactly as tests/test_configs.py checks the
recipe configs (its feature-mode path), and name their dataset's
protocol."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from tests import test_configs
from tests.conftest import REPO

DATASET_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 're2tal',
                                            'datasets', '*.py')))
PROTOCOL = {'epic-kitchens-100': 'epic-kitchens-100',
            'charades': 'charades'}


def test_configs_present_and_protocols():
    assert len(DATASET_CONFIGS) >= 3
    for path in DATASET_CONFIGS:
        cfg = Config.fromfile(path)
        (dataset, ) = [d for d in PROTOCOL if d in osp.basename(path)]
        assert cfg.val_evaluator.protocol == PROTOCOL[dataset]
        assert cfg.val_evaluator.subset == cfg.val_dataloader.dataset.subset


@pytest.mark.parametrize('config', DATASET_CONFIGS,
                         ids=[osp.basename(p)[:-3] for p in DATASET_CONFIGS])
def test_dataset_config_trains_one_iteration(config, tmp_path):
    assert '-feature_' in osp.basename(config)
    test_configs.test_feature_config_trains_one_iteration(config, tmp_path)

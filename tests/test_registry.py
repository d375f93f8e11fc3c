"""`import re2tal_mm` registers every component under its name."""
import pytest
from mmengine.registry import MODEL_WRAPPERS as ROOT_MODEL_WRAPPERS

import re2tal_mm  # noqa: F401

from mmaction import registry as mmaction_registry

EXPECTED = {
    'MODELS': ['ActionFormerHead', 'ActionFormerNeck',
               'ActionFormerTransformerNeck', 'DIoU1DLoss',
               'TALPostProcessor', 'TALSigmoidFocalLoss',
               'TemporalActionLocalizer', 'TriDetHead', 'TriDetNeck',
               'ClipBatchedViT', 'TemporalAdapter'],
    'DATASETS': ['TALDataset'],
    'TRANSFORMS': ['LoadTALFeature', 'PackTALInputs', 'TALVideoDecode',
                   'TALVideoInit', 'TALWindowSample'],
    'METRICS': ['TALMetric'],
    'HOOKS': ['InversionMonitorHook', 'RewireBackboneHook',
              'ReversibleMemoryProbeHook', 'RewiringMetaHook'],
    'MODEL_WRAPPERS': ['ReversibleDistributedDataParallel'],
    'RUNNERS': ['DataRootRunner'],
}


@pytest.mark.parametrize('registry_name', sorted(EXPECTED))
def test_components_registered_in_mmaction(registry_name):
    registry = getattr(mmaction_registry, registry_name)
    for name in EXPECTED[registry_name]:
        cls = registry.get(name)
        assert cls is not None, f'{name} missing from {registry.name}'
        assert cls.__module__.startswith('re2tal_mm.')
    ours = {k for k, v in registry.module_dict.items()
            if getattr(v, '__module__', '').startswith('re2tal_mm.')}
    assert ours == set(EXPECTED[registry_name])  # the list above is complete


def test_model_wrapper_in_root_registry():
    """The Runner looks wrappers up in mmengine's root registry."""
    cls = ROOT_MODEL_WRAPPERS.get('ReversibleDistributedDataParallel')
    assert cls is mmaction_registry.MODEL_WRAPPERS.get(
        'ReversibleDistributedDataParallel')

"""Every patch of a third-party defect, in one place.

Each patch names the defect, the versions it applies to, and is applied at most
once by :func:`apply` (called by ``import re2tal_mm``). Each has a test in
``tests/test_compat.py`` that fails without it.
"""
import functools
import importlib.metadata
import importlib.util
import logging
import os.path as osp
import pickle
import sys
import types
import warnings

logger = logging.getLogger('re2tal_mm')

# Distribution -> (minimum included, maximum excluded, what to install).
REQUIRED_VERSIONS = {
    # 2.4: torch.is_autocast_enabled(device_type) / get_autocast_dtype,
    # replayed by the reversible engine
    'torch': ('2.4', None, 'pip install torch==2.13.0'),
    'mmengine': ('0.10', '0.11', 'pip install mmengine==0.10.7'),
    # 1.2: the VideoMAE VisionTransformer the ViT adapter rewires
    'mmaction2': ('1.2', '1.3', 'pip install mmaction2==1.2.0'),
    # mmcv is not an install requirement: the full mmcv (with compiled ops)
    # or mmcv-lite both provide the `mmcv` package MMAction2 needs.
    'mmcv': ('2.0.1', '2.2',
             'pip install mmcv-lite==2.1.0 (or the full mmcv)'),
}
MMCV_DISTRIBUTIONS = ('mmcv', 'mmcv-lite', 'mmcv-full')

_applied = False


def installed_version(name):
    """Installed version of a distribution, or None (mmcv: any of its
    distributions)."""
    for dist in (MMCV_DISTRIBUTIONS if name == 'mmcv' else (name, )):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_dependencies(version_of=installed_version):
    """Fail with one message naming the package, the version found and the
    range needed when a dependency is missing or out of range."""
    found = {name: version_of(name) for name in REQUIRED_VERSIONS}
    for name, (low, high, hint) in REQUIRED_VERSIONS.items():
        if found[name] is None:
            wanted = f'>={low}' + (f',<{high}' if high else '')
            raise ImportError(f're2tal_mm needs {name}{wanted}, which is not '
                              f'installed: {hint}')
    from mmengine.utils import digit_version  # installed: checked above
    for name, (low, high, hint) in REQUIRED_VERSIONS.items():
        wanted = f'>={low}' + (f',<{high}' if high else '')
        release = digit_version(found[name])
        if release < digit_version(low) or \
                (high and release >= digit_version(high)):
            raise ImportError(
                f're2tal_mm needs {name}{wanted}, but '
                f'{name}=={found[name]} is installed: {hint}')


# ---------------------------------------------------------------------------
# Defect 1: the PyPI wheel of mmaction2 1.2.0 does not ship
# mmaction/models/localizers/drn/, while mmaction/models/localizers/__init__.py
# imports it, so `import mmaction.models` (and every Runner that builds an
# mmaction model) raises ModuleNotFoundError. When (and only when) the folder
# is really missing, a stand-in module provides a DRN that explains itself.
# ---------------------------------------------------------------------------
DRN_MODULE = 'mmaction.models.localizers.drn'


def drn_is_missing():
    spec = importlib.util.find_spec('mmaction')
    if spec is None or not spec.submodule_search_locations:
        return False
    root = spec.submodule_search_locations[0]
    return not osp.isdir(osp.join(root, 'models', 'localizers', 'drn'))


class UnavailableDRN:
    """Stand-in for MMAction2's DRN, missing from the mmaction2 1.2.0 wheel."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            'DRN is unavailable: the PyPI wheel of mmaction2 1.2.0 lacks '
            'mmaction/models/localizers/drn. Install mmaction2 from source '
            '(pip install git+...mmaction2) to use DRN.')


def patch_missing_drn():
    """Install the DRN stand-in if the module is missing; True if so."""
    if DRN_MODULE in sys.modules or not drn_is_missing():
        return False
    package = types.ModuleType(DRN_MODULE)
    package.__path__ = []
    module = types.ModuleType(DRN_MODULE + '.drn')
    module.DRN = UnavailableDRN
    package.drn = module
    sys.modules[DRN_MODULE] = package
    sys.modules[DRN_MODULE + '.drn'] = module
    logger.info('mmaction2 %s has no %s: DRN is unavailable (stand-in '
                'installed by re2tal_mm.compat).',
                installed_version('mmaction2'), DRN_MODULE)
    return True


# ---------------------------------------------------------------------------
# Defect 2: mmengine 0.10.7 calls `torch.load(filename, map_location=...)`
# when it resumes, and torch >= 2.6 defaults to `weights_only=True`, whose
# unpickler refuses the non-tensor types mmengine itself writes into a
# checkpoint (the message hub's HistoryBuffer with its numpy arrays, numpy
# scalars and dtypes, ConfigDict). Those exact types are allow-listed; safe
# loading stays on, so a checkpoint holding any other global is still refused.
# A HistoryBuffer pickles its statistics methods as `getattr(HistoryBuffer,
# 'min')`; `getattr` itself is not allow-listed: a narrow stand-in that only
# resolves HistoryBuffer's statistics methods answers to its name.
# ---------------------------------------------------------------------------
BUILTIN_STATISTICS = {'min', 'max', 'current', 'mean'}


def history_buffer_getattr(owner, name):
    """`getattr` for the weights-only unpickler, limited to HistoryBuffer."""
    from mmengine.logging import HistoryBuffer

    # the built-in statistics are only put in `_statistics_methods` when a
    # first HistoryBuffer is made, which a fresh `mim test` process has not
    allowed = set(HistoryBuffer._statistics_methods) | BUILTIN_STATISTICS
    if owner is HistoryBuffer and name in allowed:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({owner!r}, {name!r}) in a checkpoint: only '
        'HistoryBuffer statistics methods are allowed')


def mmengine_checkpoint_globals():
    """The globals mmengine 0.10.x writes into its checkpoints."""
    import numpy as np
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    try:
        from numpy.core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy >= 2 renamed numpy.core
        from numpy._core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
        np.uint16, np.uint32, np.uint64, np.float16, np.float32, np.float64)]
    return [HistoryBuffer, ConfigDict, _reconstruct, scalar, np.ndarray,
            np.dtype, *dtype_classes,
            (history_buffer_getattr, 'builtins.getattr')]


def allow_mmengine_checkpoint_globals():
    import torch.serialization
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return False  # torch < 2.4 loads without the weights-only unpickler
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    return True


# ---------------------------------------------------------------------------
# Defect 3: mmcv-lite 2.x warns on import of mmcv.cnn that its compiled
# MultiScaleDeformableAttention is missing (a UserWarning printed by every
# process that builds an MMAction2 model, although no MMAction2 model uses it).
# Only that one message is silenced.
# ---------------------------------------------------------------------------
def silence_mmcv_lite_warning():
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``',
        category=UserWarning)


# ---------------------------------------------------------------------------
# Defect 4: mmengine 0.10.7's `_init_dist_pytorch` (`--launcher pytorch`)
# calls `torch.cuda.set_device(local_rank)` before initializing any backend,
# gloo included, which raises on a CPU-only machine (a CPU build of torch has
# no `_cuda_setDevice`). Without CUDA the call is skipped; with CUDA nothing
# changes. Tested by tests/test_distributed.py (torchrun on CPU).
# ---------------------------------------------------------------------------
def patch_cpu_dist_init():
    import torch
    from mmengine.dist import utils as dist_utils
    original = dist_utils._init_dist_pytorch
    if getattr(original, 'patched_by_re2tal', False):
        return False

    def init_dist_pytorch(*args, **kwargs):
        if torch.cuda.is_available():
            return original(*args, **kwargs)
        set_device = torch.cuda.set_device
        torch.cuda.set_device = lambda device: None
        try:
            return original(*args, **kwargs)
        finally:
            torch.cuda.set_device = set_device

    init_dist_pytorch.patched_by_re2tal = True
    dist_utils._init_dist_pytorch = init_dist_pytorch
    return True


# ---------------------------------------------------------------------------
# Defect 5: mmengine 0.10.7's `Runner.wrap_model` passes
# `device_ids=[LOCAL_RANK]` to every DDP wrapper whatever the device (to its
# default `MMDistributedDataParallel` without `model_wrapper_cfg`), and
# torch's DDP refuses device_ids for a CPU module (`torchrun ... --launcher
# pytorch` on a CPU machine, gloo): `ValueError: DistributedDataParallel
# device_ids and output_device arguments only work with single-device/
# multiple-device GPU modules or CPU modules, but got device_ids [0], ...`,
# which names no setting. The fix is a wrapper that drops them for a CPU
# model (`engine/reversible_ddp.py`, which our configs set). Scoped to the
# defect's site: only the Runner's wrapping is patched (a DDP built by other
# code is untouched, and was given its device_ids by that code), and only
# that one error, for a model on the CPU, is re-raised with what to set;
# any other error, or a GPU model, goes through as it is.
# ---------------------------------------------------------------------------
CPU_DEVICE_IDS_HINT = (
    're2tal_mm: the model is on the CPU, but MMEngine\'s Runner passes '
    'device_ids=[LOCAL_RANK] to its DDP wrapper ({wrapper} here). Set '
    "model_wrapper_cfg=dict(type='ReversibleDistributedDataParallel'), "
    'which drops device_ids for a CPU model (add rewire_mode=None when the '
    'model is rewired at construction or must stay plain), e.g. '
    '--cfg-options model_wrapper_cfg.type=ReversibleDistributedDataParallel'
    '; the re2tal configs set it.')


def patch_cpu_ddp_device_ids_message():
    from mmengine.runner import Runner
    original = Runner.wrap_model
    if getattr(original, 'patched_by_re2tal', False):
        return False

    @functools.wraps(original)
    def wrap_model(self, model_wrapper_cfg, model):
        try:
            return original(self, model_wrapper_cfg, model)
        except ValueError as err:
            on_cpu = all(p.device.type == 'cpu' for p in model.parameters())
            if not (on_cpu and 'device_ids' in str(err)):
                raise
            wrapper = (model_wrapper_cfg or {}).get(
                'type', 'MMDistributedDataParallel')  # a str (MMEngine's)
            raise ValueError(f'{err}\n' + CPU_DEVICE_IDS_HINT.format(
                wrapper=wrapper)) from err

    wrap_model.patched_by_re2tal = True  # functools.wraps: __wrapped__
    Runner.wrap_model = wrap_model
    return True


def apply():
    """Check the stack and apply every patch, once."""
    global _applied
    if _applied:
        return
    check_dependencies()
    silence_mmcv_lite_warning()
    patch_missing_drn()
    allow_mmengine_checkpoint_globals()
    patch_cpu_dist_init()
    patch_cpu_ddp_device_ids_message()
    _applied = True

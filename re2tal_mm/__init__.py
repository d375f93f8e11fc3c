"""re2tal_mm: Re2TAL for MMAction2.

Importing the package checks the OpenMMLab stack, applies the patches of
:mod:`re2tal_mm.compat` once, and registers every component in MMAction2's
registries (model wrappers in MMEngine's root registry too). It prints nothing.
"""
from . import compat
from .version import __version__

compat.apply()

# isort: off
# after compat.apply(), in the order of the layers (imports point down)
from . import structures  # noqa: E402,F401
from . import reversible, rewiring  # noqa: E402,F401
from . import datasets, evaluation, models  # noqa: E402,F401
from . import engine  # noqa: E402,F401
# isort: on

__all__ = ['__version__']

"""Messages that name what they are about: the few items of a long list.

Shared by the datasets, the metric, the models and the tools (a warning
names the first few videos, labels or keys and counts the rest), so it
sits in the bottom layer.
"""
from typing import Mapping, Optional, Sequence

#: How many items a message names; the rest are counted.
MAX_NAMED = 5


def name_some(names: Sequence, counts: Optional[Mapping] = None,
              limit: int = MAX_NAMED, quote: bool = True) -> str:
    """The first ``limit`` of ``names``, the rest counted: ``'a', 'b' (3)
    and 4 more``.

    Args:
        names (Sequence): The items, in the order to name them.
        counts (Mapping, optional): A number to show after each name
            (``counts[name]``, in brackets). Defaults to None.
        limit (int): How many to name. Defaults to :data:`MAX_NAMED` (5).
        quote (bool): Name each as its ``repr`` (``'a'``), else as its
            ``str`` (``a``: video ids, paths). Defaults to True.

    Returns:
        str: The names, comma-separated, then ``and N more`` if some are
        left out.
    """
    names = list(names)
    show = repr if quote else str
    shown = [show(n) + (f' ({counts[n]})' if counts is not None else '')
             for n in names[:limit]]
    more = len(names) - limit
    return ', '.join(shown) + (f' and {more} more' if more > 0 else '')

"""Messages: the few items of a long list they name, and where they go.

Shared by the datasets, the metric, the models and the tools (a warning
names the first few videos, labels or keys and counts the rest, and goes
to the caller's logger or else to ``warnings`` and the log files), so it
sits in the bottom layer.
"""
import logging
import warnings
from typing import Any, Mapping, Optional, Sequence

from mmengine.logging import MMLogger, print_log

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


def warn(msg: str, logger: Optional[Any] = None,
         stacklevel: int = 3) -> None:
    """Warn through ``logger``, else ``warnings.warn`` plus the log files.

    Without a logger the message is a ``UserWarning`` (shown once on
    stderr) and is also written to the file handlers of MMEngine's current
    logger, so that it reaches a runner's work_dir log without being printed
    twice.

    Args:
        msg (str): The message.
        logger (logging.Logger | str | Any, optional): Where it goes: a
            name as for MMEngine's ``print_log`` (e.g. ``'current'``), or
            any object with a ``warning(msg)`` method (a
            ``logging.Logger``, a tool's stderr writer). Defaults to None.
        stacklevel (int): ``warnings.warn``'s, counted from this function:
            the default 3 points at the caller of the function that warns.
            Defaults to 3.
    """
    if isinstance(logger, str):
        print_log(msg, logger=logger, level=logging.WARNING)
        return
    if logger is not None:
        logger.warning(msg)
        return
    warnings.warn(msg, stacklevel=stacklevel)
    current = MMLogger.get_current_instance()
    files = [h for h in current.handlers
             if isinstance(h, logging.FileHandler)]
    if files:
        record = current.makeRecord(current.name, logging.WARNING,
                                    __file__, 0, msg, None, None)
        for handler in files:
            if record.levelno >= handler.level:
                handler.handle(record)

"""structures/reporting.py: naming a few items, and where a warning goes."""
import logging
import warnings

import pytest
from mmengine.logging import MMLogger

from re2tal_mm.evaluation.functional import evaluate_detection
from re2tal_mm.structures.reporting import name_some, warn


def test_name_some():
    assert name_some([]) == ''
    assert name_some(['a', 'b']) == "'a', 'b'"
    assert name_some(list('abcdefg')) == "'a', 'b', 'c', 'd', 'e' and 2 more"
    assert name_some(['x', 'y', 'z'], {'x': 3, 'y': 0}, limit=2) == \
        "'x' (3), 'y' (0) and 1 more"
    assert name_some(('v1', 'v2', 'v3'), limit=1, quote=False) == \
        'v1 and 2 more'


class _Collect:
    """An object with ``warning()`` (as tools/eval_detection.py passes)."""

    def __init__(self):
        self.messages = []

    def warning(self, msg):
        self.messages.append(msg)


def test_warn_goes_to_the_given_logger():
    collect = _Collect()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a logger given: no warning
        warn('to the object', collect)
        records = []

        class Records(logging.Handler):
            def emit(self, record):
                records.append((record.levelno, record.getMessage()))

        logger = MMLogger.get_instance('test_warn_by_name')
        logger.addHandler(Records())
        warn('to the named logger', 'test_warn_by_name')
    assert collect.messages == ['to the object']
    assert records == [(logging.WARNING, 'to the named logger')]


def test_warn_without_a_logger_reaches_the_log_file(tmp_path):
    path = str(tmp_path / 'warn.log')
    MMLogger.get_instance('test_warn_file', log_file=path)
    with pytest.warns(UserWarning, match='to warnings') as record:
        warn('to warnings and the log file', stacklevel=2)
    assert record[0].filename == __file__  # stacklevel counted from warn
    assert 'to warnings and the log file' in open(path).read()


def test_evaluate_detection_warns_once_through_either_path(tmp_path):
    """The unknown label is said once, through the logger if one is given,
    else as a UserWarning that the current logger's log file gets too."""
    gt = {'a': dict(annotations=[dict(segment=[0.0, 1.0], label='x')])}
    preds = {'a': [dict(segment=[0.0, 1.0], score=1.0, label='q')]}
    collect = _Collect()
    evaluate_detection(gt, preds, logger=collect)
    assert len(collect.messages) == 1
    assert "'q' (1)" in collect.messages[0]
    path = str(tmp_path / 'eval.log')
    MMLogger.get_instance('test_evaluate_detection_file', log_file=path)
    with pytest.warns(UserWarning, match=r"'q' \(1\)"):
        evaluate_detection(gt, preds)
    assert "'q' (1)" in open(path).read()

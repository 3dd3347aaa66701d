"""The worker's catch-all boundary logs a connection's bug with its traceback."""

from __future__ import annotations

import logging

from smb.worker import log_connection_failure


def _handler_with_a_bug() -> None:
    raise KeyError("no such thing")


def test_a_bug_is_logged_on_one_line_with_its_traceback(caplog):
    try:
        try:
            _handler_with_a_bug()
        except KeyError as inner:
            raise ExceptionGroup("nursery", [inner]) from None
    except ExceptionGroup as exc:
        with caplog.at_level(logging.ERROR, logger="smb.worker"):
            log_connection_failure("10.0.0.9", exc)
    [record] = caplog.records
    assert record.getMessage().startswith("connection from 10.0.0.9 failed: KeyError")
    assert "\n" not in record.getMessage()
    assert "_handler_with_a_bug" in caplog.text  # the traceback names where it broke

"""The process-wide logging set-up: where lines go, and that it can be put back as a fresh process has it."""

from __future__ import annotations

import io
import json
import logging
import sys

import structlog

from skerry.core import logging as skerry_logging


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_go_to_the_stderr_current_when_they_are_written(monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    skerry_logging.configure("info", json_output=True)
    first.close()  # what a test's capture or a command's closed pipe leaves behind
    monkeypatch.setattr(sys, "stderr", second)
    skerry_logging.get_logger("skerry.test").info("after the swap", n=1)
    assert [(e["event"], e["n"]) for e in lines(second)] == [("after the swap", 1)]


def test_configuring_twice_is_the_same_set_up_not_a_second_one():
    out = io.StringIO()
    for _ in range(2):
        skerry_logging.configure("warning", json_output=True, stream=out)
    log = skerry_logging.get_logger("skerry.test")
    log.info("below the level")
    log.warning("once")
    assert [e["event"] for e in lines(out)] == ["once"]


def test_reset_forgets_the_set_up_and_who_asked_for_it():
    out = io.StringIO()
    skerry_logging.configure("debug", json_output=True, stream=out)
    assert skerry_logging.is_configured()
    skerry_logging.reset()
    assert not skerry_logging.is_configured()
    assert structlog.get_config()["logger_factory"].__class__ is structlog.PrintLoggerFactory
    structlog.get_logger("skerry.test").info("to the default output")
    assert out.getvalue() == ""


def test_a_structlog_set_up_put_back_by_hand_is_not_a_process_asking_for_logs():
    with structlog.testing.capture_logs():  # configures structlog, then configures the old processors back
        pass
    structlog.configure(**structlog.get_config())  # what a test restoring "the previous set-up" does
    assert structlog.is_configured()  # structlog's own flag cannot tell...
    assert not skerry_logging.is_configured()  # ...so whether to log is decided on ours


def test_a_deferred_set_up_is_applied_by_the_first_line(monkeypatch):
    out = io.StringIO()
    monkeypatch.delitem(sys.modules, "structlog")  # as in a fresh ``skerry render`` process
    skerry_logging.configure("info", json_output=True, stream=out, defer=True)
    monkeypatch.undo()
    assert skerry_logging.is_configured() and out.getvalue() == ""
    skerry_logging.get_logger("skerry.test").info("first")
    assert [e["event"] for e in lines(out)] == ["first"]


def test_level_names_mean_what_the_standard_library_means(monkeypatch):
    for name, number in skerry_logging.LEVELS.items():
        assert getattr(logging, name.upper()) == number, name
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    skerry_logging.configure("warning", json_output=True)
    try:
        log = skerry_logging.get_logger("t")
        log.info("hidden")
        log.warning("shown")
    finally:
        skerry_logging.reset()
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["shown"]

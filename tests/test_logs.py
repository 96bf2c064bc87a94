"""Worker logs: every line a JSON object naming its logger; chatty libraries keep quiet."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest
import structlog

from aios.logs import QUIET_LOGGERS, configure_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_is_json_and_names_its_logger(log_stream: io.StringIO) -> None:
    structlog.get_logger("aios.example").info("from structlog", n=1)
    logging.getLogger("some.library").warning("from the standard library: %s", "formatted")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("some.library").exception("with a traceback")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    found = lines(log_stream)
    assert [(line["logger"], line["level"]) for line in found] == [
        ("aios.example", "info"),
        ("some.library", "warning"),
        ("some.library", "error"),
        ("py.warnings", "warning"),
    ]
    assert found[0]["event"] == "from structlog" and found[0]["n"] == 1
    assert found[1]["event"] == "from the standard library: formatted"
    assert "ValueError: boom" in str(found[2]["exception"])
    assert all("timestamp" in line for line in found)


def test_chatty_libraries_log_only_warnings(log_stream: io.StringIO) -> None:
    assert "fontTools" in QUIET_LOGGERS
    subset = logging.getLogger("fontTools.subset")
    subset.info("Glyph names: ['.notdef', 'A', 'B']")  # what every PDF with a font used to log
    logging.getLogger("fontTools.ttLib.ttFont").info("Reading 'glyf' table")
    subset.warning("a real problem")
    assert [(line["logger"], line["event"]) for line in lines(log_stream)] == [
        ("fontTools.subset", "a real problem")
    ]

"""Structured JSON logs. Every line inside Temporal code carries workflow id, run id, activity.

``configure_logging`` makes every line a process writes a JSON object with ``timestamp``,
``level``, ``logger`` (the logger's name) and ``event``: structlog loggers, and the standard
library's (the Temporal SDK, ``workflow.logger``, ``activity.logger``, libraries, Python
warnings) through structlog's ``ProcessorFormatter``. A worker also forwards the SDK core's own
lines (``temporalio.core.*``, see ``workers.main.worker_runtime``). The SDK attaches the
running workflow or activity to each record; ``_temporal_context`` lifts those into top-level
fields. Chatty libraries log only warnings (``QUIET_LOGGERS``).
Keys that look like secrets are masked before anything is written, and every line is scrubbed
as the last step before it is rendered (after exception tracebacks are formatted): each string
in it, the message, fields and traceback alike, goes through the process-wide scrubber
(``aios.secrets.installed``: key-shaped strings, and every secret of the settings the worker
was built from), or through the ``scrubber`` given to ``configure_logging``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from aios.secrets import Scrubber, installed

__all__ = ["QUIET_LOGGERS", "configure_logging", "scrubbing"]

# The Stripe library logs request URLs (with customer emails) and, on auth errors, part of the
# key at INFO; the OpenAI client and its HTTP stack log every request at INFO/DEBUG; fontTools
# reports every font subset it makes for a PDF at INFO. Only their warnings are ours to keep.
QUIET_LOGGERS = (
    "stripe",
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "fontTools",
    "fpdf",
)

_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "authorization")


def _temporal_context(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    record: logging.LogRecord | None = event.get("_record")
    details: dict[str, Any] = {}
    if record is not None:
        details = (
            getattr(record, "temporal_activity", None)
            or getattr(record, "temporal_workflow", None)
            or {}
        )
        for extra in ("idempotency_key", "operation"):
            if hasattr(record, extra):
                event[extra] = getattr(record, extra)
    else:
        from temporalio import activity

        if activity.in_activity():
            info = activity.info()
            details = {
                "workflow_id": info.workflow_id,
                "run_id": info.workflow_run_id,
                "activity_type": info.activity_type,
            }
    if details:
        event.setdefault("workflow_id", details.get("workflow_id"))
        event.setdefault("run_id", details.get("run_id") or details.get("workflow_run_id"))
        if "activity_type" in details:
            event.setdefault("activity", details["activity_type"])
        elif "workflow_type" in details:
            event.setdefault("workflow_type", details["workflow_type"])
    return event


def _mask_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = "***"
    return event


def scrubbing(scrubber: Scrubber | None = None) -> Any:
    """A structlog processor that scrubs every string of a log line (keys and values)."""

    def _scrub(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        scrub = scrubber or installed()
        return {scrub.scrub(str(k)): _scrubbed(scrub, v) for k, v in event.items()}

    return _scrub


def _scrubbed(scrub: Scrubber, value: Any) -> Any:
    if isinstance(value, str):
        return scrub.scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {scrub.scrub(str(k)): _scrubbed(scrub, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrubbed(scrub, v) for v in value]
    return scrub.scrub(repr(value))  # what the JSON renderer would write, scrubbed


def configure_logging(
    level: str = "info", stream: Any = None, *, scrubber: Scrubber | None = None
) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _temporal_context,
        _mask_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                scrubbing(scrubber),
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    # The fields above carry the workflow and activity; keep the messages themselves short.
    from temporalio import activity, workflow

    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn(...) becomes a line of logger py.warnings
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)

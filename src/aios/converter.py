"""The data converter every client, worker and replayer uses: pydantic JSON, plus one rule.

A workflow's input is a model derived from ``ProcessInput``. When a run's input does not fit
its model (``temporal workflow start`` with notes over the limit, a missing field, a NUL in a
name), the SDK would fail the first workflow task on every retry, and the run would hang
RUNNING for good. This converter turns that into a non-retryable ``ApplicationError`` of type
``InvalidInput``, which fails the run at once with a message naming the fields and problems;
the values themselves (client text) are never copied into it.
"""

from __future__ import annotations

from typing import Any

import temporalio.api.common.v1
from pydantic import BaseModel, ValidationError
from temporalio.contrib.pydantic import (
    PydanticJSONPlainPayloadConverter,
    PydanticPayloadConverter,
)
from temporalio.converter import CompositePayloadConverter, DataConverter
from temporalio.exceptions import ApplicationError

__all__ = ["DATA_CONVERTER", "ProcessInput", "describe_validation"]


class ProcessInput(BaseModel):
    """Base of every workflow's input model."""


def describe_validation(exc: ValidationError) -> str:
    """``field: problem; ...`` in one line, without the values that were given."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class _JSON(PydanticJSONPlainPayloadConverter):
    def from_payload(
        self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None
    ) -> Any:
        try:
            return super().from_payload(payload, type_hint)
        except ValidationError as exc:
            if isinstance(type_hint, type) and issubclass(type_hint, ProcessInput):
                raise ApplicationError(
                    f"the run's input is not a valid {type_hint.__name__}: "
                    f"{describe_validation(exc)}",
                    type="InvalidInput",
                    non_retryable=True,
                ) from None
            raise


class _PayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        base = PydanticPayloadConverter()
        super().__init__(
            *(
                _JSON() if isinstance(c, PydanticJSONPlainPayloadConverter) else c
                for c in base.converters.values()
            )
        )


DATA_CONVERTER = DataConverter(payload_converter_class=_PayloadConverter)

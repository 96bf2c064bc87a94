"""Policies: plain values that decide how long gates wait and what needs a human.

Policies travel into workflows as part of their input, so a run keeps the policy it started
with even if the operator changes settings later. Client text never reaches this module.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["GatePolicy"]


class GatePolicy(BaseModel):
    """A gate reminds the operator every ``remind_after`` and expires at ``expire_after``."""

    model_config = ConfigDict(frozen=True)

    remind_after: timedelta = timedelta(hours=24)
    expire_after: timedelta = timedelta(days=7)

    @model_validator(mode="after")
    def _positive(self) -> GatePolicy:
        if self.remind_after <= timedelta(0) or self.expire_after <= timedelta(0):
            raise ValueError("remind_after and expire_after must be positive durations")
        return self

    def reminder_times(self) -> list[timedelta]:
        """Offsets from the request at which reminders go out, all before expiry."""
        times: list[timedelta] = []
        at = self.remind_after
        while at < self.expire_after:
            times.append(at)
            at += self.remind_after
        return times

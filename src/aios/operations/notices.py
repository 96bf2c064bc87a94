"""Notices as the operator sees them: listed in the inbox beside the gates, dismissed by key.

A notice is something that needs a look but no run waits on a decision (see
``kernel.stores.notices``). ``dismiss`` resolves one with who and why; dismissing one that was
already resolved says by whom and when, and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aios.errors import InvalidInput

if TYPE_CHECKING:
    from aios.kernel.stores.notices import Notice, NoticeStore

__all__ = ["Dismissed", "dismiss", "resolution_text"]

REASON_LIMIT = 500


@dataclass(frozen=True)
class Dismissed:
    notice: Notice
    already: bool  # it was resolved before this call


def resolution_text(reason: str) -> str:
    """``dismissed`` or ``dismissed: <reason>``; a NUL or an overlong reason is refused."""
    reason = " ".join(reason.split())
    if "\x00" in reason:
        raise InvalidInput("reason: contains U+0000")
    if len(reason) > REASON_LIMIT:
        raise InvalidInput(f"reason: {len(reason)} characters, at most {REASON_LIMIT}")
    return f"dismissed: {reason}" if reason else "dismissed"


def dismiss(store: NoticeStore, key: str, *, by: str, reason: str = "") -> Dismissed:
    """Resolve the notice ``key`` as dismissed by ``by``; unknown keys are an ``InvalidInput``."""
    key = key.strip()
    if not key:
        raise InvalidInput("notice key: empty")
    text = resolution_text(reason)
    before = store.get(key)
    if before is None:
        raise InvalidInput(f"no notice with key {key!r}; `aios inbox` lists the open ones")
    if before.status == "resolved":
        return Dismissed(before, already=True)
    after = store.resolve(key, by=by, resolution=text)
    assert after is not None
    return Dismissed(after, already=after.resolved_by != by or after.resolution != text)

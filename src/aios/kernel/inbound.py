"""Matching an inbound email to what AiOs sent, and the operator's replies to gate emails.

Pure: no I/O. An email AiOs sends has Message-ID ``<digest@aios>`` (``connectors.email``);
with ``AIOS_IMAP_ADDRESS`` set it also carries ``Reply-To: <local>+<digest>@<domain>``, and a
gate email ``<local>+<digest>-<secret>@<domain>`` plus a line naming the secret. The secret
(``gate_reply_secret``) is an HMAC of the gate's run and step key under the console's signing
key (the one that signs the email links), so only someone who got that gate email can answer
that gate by email; it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "OperatorCommand",
    "answered_ids",
    "gate_reply_secret",
    "hide_secrets",
    "operator_command",
    "reply_token",
    "secret_matches",
    "split_token",
]

SECRET_SALT = b"aios.gate-reply"
SECRET_CHARS = 16
_SECRET_LINE = re.compile(rf"reply token[:\s]+([0-9a-f]{{{SECRET_CHARS}}})\b", re.I)
_COMMAND = re.compile(r"^\s*(approve|approved|reject|rejected)\b\s*[:\-]?\s*(.*)$", re.I)


def gate_reply_secret(key: bytes, workflow_id: str, run_id: str, gate_key: str) -> str:
    """The secret that lets a reply to this gate's email decide it."""
    message = "\x1f".join((workflow_id, run_id, gate_key)).encode()
    return hmac.new(key, SECRET_SALT + b"\x1e" + message, hashlib.sha256).hexdigest()[:SECRET_CHARS]


def digest_of(message_id: str) -> str:
    """``<abc@aios>`` -> ``abc``."""
    return message_id.strip().strip("<>").partition("@")[0]


def reply_token(message_id: str, secret: str | None = None) -> str:
    """The plus-address token of an email: its Message-ID's digest, and a gate's secret."""
    digest = digest_of(message_id)
    return f"{digest}-{secret}" if secret else digest


def split_token(token: str) -> tuple[str, str | None]:
    """A plus-address token as (the Message-ID it names, the secret it carries, if any)."""
    digest, _, secret = token.partition("-")
    return f"<{digest}@aios>", secret or None


def answered_ids(answers: list[str], tokens: list[str]) -> list[str]:
    """The Message-IDs an email answers: its headers' first, then its plus-address tokens'."""
    ids = list(answers)
    for token in tokens:
        mid, _ = split_token(token)
        if mid not in ids:
            ids.append(mid)
    return ids


def secret_matches(expected: str, tokens: list[str], text: str) -> bool:
    """Whether the reply carries ``expected`` (in a plus-address or the quoted token line)."""
    candidates = [s for _, s in map(split_token, tokens) if s]
    candidates += _SECRET_LINE.findall(text)
    ok = False
    for candidate in candidates:  # every candidate compared, each in constant time
        ok |= hmac.compare_digest(candidate.lower().encode(), expected.encode())
    return ok


def hide_secrets(text: str) -> str:
    """``text`` with every gate reply token line's token hidden (for excerpts and notices)."""
    return _SECRET_LINE.sub("reply token [hidden]", text)


@dataclass(frozen=True)
class OperatorCommand:
    decision: Literal["approve", "reject"]
    comment: str


def operator_command(text: str) -> OperatorCommand | None:
    """The first non-empty line of the reply as ``approve`` or ``reject: reason``, or None."""
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _COMMAND.match(line)
        if match is None:
            return None
        word, rest = match.group(1).lower(), " ".join(match.group(2).split())[:500]
        decision: Literal["approve", "reject"] = (
            "approve" if word.startswith("approve") else "reject"
        )
        return OperatorCommand(decision=decision, comment=rest)
    return None

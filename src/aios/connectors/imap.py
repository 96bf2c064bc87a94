"""The inbound mailbox over IMAP, and what an inbound email says.

``ImapMailbox`` (``imapclient``) fetches the messages not yet seen in one folder, without
marking them (``BODY.PEEK[]``), and marks them ``\\Seen`` only when asked: the poller does that
after each message's own workflow has it, so a worker that dies in between leaves the message
unseen and the next poll fetches it again (its workflow id, derived from its Message-ID, makes
that harmless).

``parse_email`` turns the raw bytes into an ``InboundEmail``: the sender, the recipients, the
subject, the Message-IDs it answers (``In-Reply-To`` and ``References``), the plain text (an
HTML-only message is reduced to its text) and the attachments, each kept up to a size limit
(a bigger one is listed, not kept). A message without a Message-ID gets one from the digest of
its bytes, so the same bytes always get the same id.

Reply tokens ride in plus-addresses: with ``AIOS_IMAP_ADDRESS=aios@example.com`` an email AiOs
sends carries ``Reply-To: aios+<token>@example.com`` (``reply_address``); ``plus_tokens`` finds
the tokens in the recipients of an answer.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from aios.connectors.contract import CheckResult, Operation
from aios.errors import ConnectorAuthError, InvalidInput, TransientConnectorError

__all__ = [
    "ImapConfig",
    "ImapMailbox",
    "InboundAttachment",
    "InboundEmail",
    "MailboxBatch",
    "RawMessage",
    "message_key",
    "parse_email",
    "plus_tokens",
    "reply_address",
]

NAME = "imap"
# Marking a message seen is a flag on the mailbox, the same however often it is set: it needs
# no outbox entry, so it is not an effect here.
OPERATIONS = {
    "fetch": Operation("fetch", effect=False),
    "mark_seen": Operation("mark_seen", effect=False),
}
MAX_BODY_CHARS = 50_000
_MSGID = re.compile(r"<[^<>\s]+>")


class ImapConfig(BaseModel):
    host: str
    port: int = Field(ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "tls"
    username: str
    password: SecretStr
    folder: str = "INBOX"
    timeout_seconds: float = 20.0


@dataclass(frozen=True)
class RawMessage:
    uid: int
    data: bytes


@dataclass(frozen=True)
class MailboxBatch:
    """Unseen messages of one folder, with the folder's UIDVALIDITY (UIDs hold only under it)."""

    uid_validity: int
    messages: list[RawMessage]


class ImapMailbox:
    """One folder of one IMAP account."""

    name = NAME
    operations = OPERATIONS

    def __init__(self, config: ImapConfig) -> None:
        self._config = config

    @property
    def folder(self) -> str:
        return self._config.folder

    def _connect(self):  # type: ignore[no-untyped-def]
        from imapclient import IMAPClient
        from imapclient.exceptions import LoginError

        cfg = self._config
        try:
            imap = IMAPClient(
                cfg.host,
                port=cfg.port,
                ssl=cfg.security == "tls",
                ssl_context=ssl.create_default_context() if cfg.security == "tls" else None,
                timeout=cfg.timeout_seconds,
            )
        except OSError as exc:
            raise TransientConnectorError(
                NAME, f"cannot reach {cfg.host}:{cfg.port} ({type(exc).__name__}: {exc})"
            ) from exc
        try:
            if cfg.security == "starttls":
                imap.starttls(ssl.create_default_context())
            imap.login(cfg.username, cfg.password.get_secret_value())
        except LoginError as exc:
            imap.shutdown()
            raise ConnectorAuthError(NAME, f"login as {cfg.username!r} refused") from exc
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def _session(self, *, readonly: bool):  # type: ignore[no-untyped-def]
        imap = self._connect()
        try:
            info = imap.select_folder(self._config.folder, readonly=readonly)
        except Exception as exc:
            imap.logout()
            raise InvalidInput(
                f"imap: folder {self._config.folder!r} cannot be opened ({exc})"
            ) from exc
        return imap, int(info.get(b"UIDVALIDITY", 0))

    def fetch_unseen(self, limit: int) -> MailboxBatch:
        """Up to ``limit`` unseen messages, oldest first, left unseen."""
        from imapclient.exceptions import IMAPClientError

        try:
            imap, validity = self._session(readonly=True)
            try:
                uids = sorted(imap.search(["UNSEEN"]))[:limit]
                fetched = imap.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            finally:
                imap.logout()
        except (IMAPClientError, OSError) as exc:
            raise TransientConnectorError(NAME, f"fetch failed ({type(exc).__name__})") from exc
        messages = [
            RawMessage(uid=uid, data=bytes(fetched[uid][b"BODY[]"]))
            for uid in uids
            if uid in fetched and b"BODY[]" in fetched[uid]
        ]
        return MailboxBatch(uid_validity=validity, messages=messages)

    def mark_seen(self, uids: list[int], uid_validity: int) -> int:
        """Flag ``uids`` ``\\Seen``; nothing when the folder's UIDVALIDITY changed meanwhile
        (its UIDs then name other messages). Returns how many were flagged."""
        from imapclient import SEEN
        from imapclient.exceptions import IMAPClientError

        if not uids:
            return 0
        try:
            imap, validity = self._session(readonly=False)
            try:
                if validity != uid_validity:
                    return 0
                imap.add_flags(uids, [SEEN])
            finally:
                imap.logout()
        except (IMAPClientError, OSError) as exc:
            raise TransientConnectorError(
                NAME, f"marking seen failed ({type(exc).__name__})"
            ) from exc
        return len(uids)

    def check(self) -> CheckResult:
        """Log in and open the folder (read-only): nothing is changed."""
        cfg = self._config
        try:
            imap, _ = self._session(readonly=True)
            imap.logout()
        except ConnectorAuthError as exc:
            return CheckResult(ok=False, detail=str(exc))
        except Exception as exc:
            return CheckResult(
                ok=False, detail=f"cannot use {cfg.host}:{cfg.port} ({type(exc).__name__})"
            )
        return CheckResult(ok=True, detail=f"{cfg.host}:{cfg.port} folder {cfg.folder} opens")


# --- what an email says -----------------------------------------------------------------------


@dataclass(frozen=True)
class InboundAttachment:
    filename: str
    content_type: str
    size: int
    content: bytes | None  # None: over the size limit, listed but not kept


@dataclass(frozen=True)
class InboundEmail:
    message_id: str
    sender: str  # the From address, lower case
    sender_name: str
    recipients: list[str]  # To, Cc, Delivered-To, lower case
    subject: str
    in_reply_to: list[str]
    references: list[str]
    text: str
    attachments: list[InboundAttachment]

    @property
    def key(self) -> str:
        return message_key(self.message_id)

    @property
    def answers(self) -> list[str]:
        """The Message-IDs this email answers, the direct parent first."""
        seen: list[str] = []
        for mid in [*self.in_reply_to, *reversed(self.references)]:
            if mid not in seen:
                seen.append(mid)
        return seen


def message_key(message_id: str) -> str:
    """A short, fixed-size key for a Message-ID (workflow ids and notice keys have limits)."""
    return hashlib.sha256(message_id.strip().encode()).hexdigest()[:32]


def _ids(value: str | None) -> list[str]:
    return _MSGID.findall(value or "")[:50]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts)


def parse_email(data: bytes, *, max_attachment_bytes: int) -> InboundEmail:
    """What the raw message ``data`` says; ``InvalidInput`` when it has no usable sender."""
    msg = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    ids = _ids(str(msg.get("Message-ID", "")))
    message_id = ids[0] if ids else f"<{hashlib.sha256(data).hexdigest()[:32]}@no-message-id>"
    name, sender = parseaddr(str(msg.get("From", "")))
    if "@" not in sender:
        raise InvalidInput(f"email {message_id}: From has no address")
    recipients = [
        addr.lower()
        for _, addr in getaddresses(
            [str(v) for h in ("To", "Cc", "Delivered-To") for v in msg.get_all(h, [])]
        )
        if "@" in addr
    ]
    text = ""
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        try:
            content = body.get_content()
        except (LookupError, ValueError):
            content = body.get_payload(decode=True) or b""
            content = content.decode("utf-8", "replace") if isinstance(content, bytes) else ""
        text = _html_text(content) if body.get_content_type() == "text/html" else str(content)
    attachments: list[InboundAttachment] = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        attachments.append(
            InboundAttachment(
                filename=(part.get_filename() or "attachment")[:200],
                content_type=part.get_content_type(),
                size=len(raw),
                content=raw if len(raw) <= max_attachment_bytes else None,
            )
        )
    return InboundEmail(
        message_id=message_id,
        sender=sender.lower(),
        sender_name=name[:200],
        recipients=recipients[:50],
        subject=" ".join(str(msg.get("Subject", "")).split())[:500],
        in_reply_to=_ids(str(msg.get("In-Reply-To", ""))),
        references=_ids(str(msg.get("References", ""))),
        text=text.replace("\x00", "")[:MAX_BODY_CHARS],
        attachments=attachments[:20],
    )


# --- reply tokens in plus-addresses -----------------------------------------------------------


def reply_address(base: str, token: str) -> str:
    """``aios@example.com`` + ``abc`` -> ``aios+abc@example.com``."""
    local, _, domain = base.partition("@")
    if not local or not domain:
        raise InvalidInput(f"imap_address: {base!r} is not an address")
    return f"{local}+{token}@{domain}"


def plus_tokens(addresses: list[str], base: str) -> list[str]:
    """The tokens of the plus-addresses of ``base`` among ``addresses``."""
    local, _, domain = base.lower().partition("@")
    tokens = []
    for address in addresses:
        a_local, _, a_domain = address.lower().partition("@")
        head, plus, token = a_local.partition("+")
        if plus and head == local and a_domain == domain and token:
            tokens.append(token)
    return tokens

"""SMTP email: compose messages and hand them to a server, classifying what goes wrong.

Every message carries a ``Message-ID`` derived from its idempotency key and an
``X-Aios-Idempotency-Key`` header, so a message can always be traced to the workflow step that
sent it and receivers that de-duplicate by Message-ID see one message per step.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import re
import smtplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from aios.connectors.contract import CheckResult, Operation
from aios.errors import (
    ConnectorAuthError,
    InvalidInput,
    PermanentConnectorError,
    TransientConnectorError,
)

__all__ = [
    "Attachment",
    "OutgoingEmail",
    "SmtpConfig",
    "SmtpEmailConnector",
    "SmtpSession",
    "message_id_for",
]

NAME = "email"
# A sent email cannot be unsent; what undoes it is another message (a retraction, a
# cancellation), which the workflows send as their compensations.
OPERATIONS = {"send": Operation("send", effect=True, compensation="send")}
_LONG_LINES = email.policy.default.clone(max_line_length=998)
_HEADER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,75}$")


class SmtpConfig(BaseModel):
    host: str
    port: int = Field(ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = 20.0
    sender: str


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str
    idempotency_key: str
    attachments: tuple[Attachment, ...] = ()
    # An HTML alternative to ``body`` (the plain text), and extra headers such as
    # ``List-Unsubscribe``; a header name or value with a line break is refused.
    html: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    reply_to: str | None = None  # where answers go (a plus-address of the inbound mailbox)
    in_reply_to: str | None = None  # the Message-ID this email answers


def message_id_for(idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@aios>"


class SmtpEmailConnector:
    """Sends ``OutgoingEmail`` through one SMTP server."""

    name = NAME
    operations = OPERATIONS

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    def _connect(self) -> smtplib.SMTP:
        cfg = self._config
        timeout = cfg.timeout_seconds
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=timeout)
        try:
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username and cfg.password:
                smtp.login(cfg.username, cfg.password.get_secret_value())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def check(self) -> CheckResult:
        """Connect, log in and say NOOP: the server takes mail, and nothing is sent."""
        cfg = self._config
        try:
            with self._connect() as smtp:
                code, _ = smtp.noop()
        except smtplib.SMTPAuthenticationError as exc:
            return CheckResult(ok=False, detail=f"authentication failed ({exc.smtp_code})")
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            return CheckResult(
                ok=False, detail=f"cannot reach {cfg.host}:{cfg.port} ({type(exc).__name__})"
            )
        if code != 250:
            return CheckResult(ok=False, detail=f"NOOP answered {code}")
        return CheckResult(ok=True, detail=f"{cfg.host}:{cfg.port} accepts connections")

    @property
    def sender(self) -> str:
        return self._config.sender

    def compose(self, email: OutgoingEmail) -> EmailMessage:
        parsed = getaddresses([email.to])
        if len(parsed) != 1 or "@" not in parsed[0][1] or "\n" in email.to or "\r" in email.to:
            raise InvalidInput(f"email: recipient {email.to!r} is not exactly one address")
        subject = " ".join(email.subject.split())
        if not subject:
            raise InvalidInput("email: subject must not be empty")
        # A List-Unsubscribe URL is one long word: folded at 78 characters it would become an
        # encoded word no mail program reads as a URL, so messages with extra headers fold at
        # the RFC 5322 limit instead.
        msg = EmailMessage(policy=_LONG_LINES) if email.headers else EmailMessage()
        msg["From"] = self._config.sender
        msg["To"] = email.to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id_for(email.idempotency_key)
        msg["X-Aios-Idempotency-Key"] = email.idempotency_key
        for name, value in email.headers:
            if not _HEADER_NAME.match(name) or any(ch in value for ch in "\r\n\x00"):
                raise InvalidInput(f"email: header {name!r} is not one safe line")
            msg[name] = value
        if email.reply_to:
            msg["Reply-To"] = email.reply_to
        if email.in_reply_to:
            msg["In-Reply-To"] = email.in_reply_to
            msg["References"] = email.in_reply_to
        msg.set_content(email.body)
        if email.html is not None:
            msg.add_alternative(email.html, subtype="html")
        for att in email.attachments:
            msg.add_attachment(
                att.content,
                maintype=att.maintype,
                subtype=att.subtype,
                filename=att.filename,
                params=dict(att.params),
            )
        return msg

    @contextmanager
    def session(self) -> Iterator[SmtpSession]:
        """One connection for many messages (a newsletter batch), opened on first use and
        closed (QUIT) at the end; ``send(..., session=)`` uses it."""
        session = SmtpSession(self._connect)
        try:
            yield session
        finally:
            session.close()

    def send(
        self, email: OutgoingEmail, *, dry_run: bool = False, session: SmtpSession | None = None
    ) -> dict[str, str]:
        """Hand the message to the SMTP server; returns its Message-ID and recipient.

        With ``dry_run`` the message is composed and checked but not sent. With ``session``
        the message goes over that session's connection (no connect and QUIT per message, so
        the caller records the hand-off right after the server's 250); a connection that
        failed is dropped and the next message opens a new one.
        """
        msg = self.compose(email)
        cfg = self._config
        if dry_run:
            return {"message_id": str(msg["Message-ID"]), "to": email.to, "dry_run": "true"}
        try:
            if session is None:
                with self._connect() as smtp:
                    refused = smtp.send_message(msg)
            else:
                refused = session.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise ConnectorAuthError(NAME, f"authentication failed ({exc.smtp_code})") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise _classified(exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            detail = _text(exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise TransientConnectorError(
                    NAME, f"server busy ({exc.smtp_code} {detail})"
                ) from exc
            raise PermanentConnectorError(
                NAME, f"server refused ({exc.smtp_code} {detail})"
            ) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TransientConnectorError(
                NAME, f"cannot reach {cfg.host}:{cfg.port} ({type(exc).__name__}: {exc})"
            ) from exc
        if refused:
            raise _classified(refused)
        return {"message_id": str(msg["Message-ID"]), "to": email.to}


class SmtpSession:
    """A reusable SMTP connection (``SmtpEmailConnector.session``); not thread-safe."""

    def __init__(self, connect: Callable[[], smtplib.SMTP]) -> None:
        self._connect = connect
        self._smtp: smtplib.SMTP | None = None

    def send_message(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            return self._smtp.send_message(msg)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused):
            raise  # refused and reset (RSET) by smtplib: the connection stays usable
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.quit()
            with contextlib.suppress(Exception):
                smtp.close()


def _classified(refused: dict[str, tuple[int, bytes]]) -> Exception:
    addr, (code, text) = next(iter(refused.items()))
    message = f"recipient {addr} refused ({code} {_text(text)})"
    if 400 <= code < 500:
        return TransientConnectorError(NAME, message)
    return PermanentConnectorError(NAME, message)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value

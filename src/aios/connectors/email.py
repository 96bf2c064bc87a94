"""SMTP email: compose messages and hand them to a server, classifying what goes wrong.

Every message carries a ``Message-ID`` derived from its idempotency key and an
``X-Aios-Idempotency-Key`` header, so a message can always be traced to the workflow step that
sent it and receivers that de-duplicate by Message-ID see one message per step.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
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

__all__ = ["Attachment", "OutgoingEmail", "SmtpConfig", "SmtpEmailConnector", "message_id_for"]

NAME = "email"
# A sent email cannot be unsent; what undoes it is another message (a retraction, a
# cancellation), which the workflows send as their compensations.
OPERATIONS = {"send": Operation("send", effect=True, compensation="send")}


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
        msg = EmailMessage()
        msg["From"] = self._config.sender
        msg["To"] = email.to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id_for(email.idempotency_key)
        msg["X-Aios-Idempotency-Key"] = email.idempotency_key
        if email.reply_to:
            msg["Reply-To"] = email.reply_to
        if email.in_reply_to:
            msg["In-Reply-To"] = email.in_reply_to
            msg["References"] = email.in_reply_to
        msg.set_content(email.body)
        for att in email.attachments:
            msg.add_attachment(
                att.content,
                maintype=att.maintype,
                subtype=att.subtype,
                filename=att.filename,
                params=dict(att.params),
            )
        return msg

    def send(self, email: OutgoingEmail, *, dry_run: bool = False) -> dict[str, str]:
        """Hand the message to the SMTP server; returns its Message-ID and recipient.

        With ``dry_run`` the message is composed and checked but not sent.
        """
        msg = self.compose(email)
        cfg = self._config
        if dry_run:
            return {"message_id": str(msg["Message-ID"]), "to": email.to, "dry_run": "true"}
        try:
            with self._connect() as smtp:
                refused = smtp.send_message(msg)
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


def _classified(refused: dict[str, tuple[int, bytes]]) -> Exception:
    addr, (code, text) = next(iter(refused.items()))
    message = f"recipient {addr} refused ({code} {_text(text)})"
    if 400 <= code < 500:
        return TransientConnectorError(NAME, message)
    return PermanentConnectorError(NAME, message)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value

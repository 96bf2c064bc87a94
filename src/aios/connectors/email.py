"""SMTP email: compose messages and hand them to a server, classifying what goes wrong.

Every message carries a ``Message-ID`` derived from its idempotency key and an
``X-Aios-Idempotency-Key`` header, so a message can always be traced to the workflow step that
sent it and receivers that de-duplicate by Message-ID see one message per step.

Exactly once, across crashes: an SMTP server delivers a message only once it has read the
terminating ``<CRLF>.<CRLF>`` of DATA; a connection that drops before it makes the server
discard the message (RFC 5321 4.1.1.4; aiosmtpd does the same). So ``send(..., commit=)``
sends MAIL FROM, RCPT TO, DATA and the dot-stuffed body without that final dot, then calls
``commit`` (the outbox's commit point, ``aios.kernel.stores.outbox.CommitPoint``), which marks
the outbox row done with a provisional result (the Message-ID, accepted by the server pending
its reply) and sends COMMIT to PostgreSQL; the dot follows at once, then ``commit.confirm()``
reads PostgreSQL's answer, and the server's reply is read and recorded.

- Killed before the COMMIT left: the server never got the dot and discards the message; the
  row is pending and the retry sends the message once.
- Killed after it: PostgreSQL commits what it received whether or not the worker lives, so
  the row is done and the retry sends nothing; once the dot is in the kernel's socket buffer
  the kernel still delivers it after the process died (a normal close, no ``SO_LINGER`` 0),
  so the message arrives exactly once.
- The one window left: a process that dies between sending COMMIT and sending the dot (two
  system calls, a few Python lines apart) leaves a message recorded as sent that never left;
  never a duplicate. Waiting for PostgreSQL's answer before the dot would widen that window
  to the whole commit round trip (milliseconds on a busy machine: a benchmark kill fell into
  it about one time in three). While a thread is in the window the interpreter switches
  threads every 0.5 ms instead of 5 ms (``_HandOverSoon``), so another thread holding the GIL
  cannot stretch it.
- The COMMIT fails (PostgreSQL gone at that very moment) after the dot left: the message may
  have been delivered while the row stays pending; the error is raised, and a retry may send
  a second copy. This needs a database failure within that commit.
- The server rejects the message at the end of DATA (4xx/5xx) while the worker is alive: the
  commit is reverted (the row is pending again with the reply as its last error) and the
  error is classified as always: 4xx transient and retried, 5xx permanent.
- The connection fails after the dot, before the reply was read: the server may have taken
  the message, so the row stays done (the error is raised, and the retry finds the row done).
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import re
import smtplib
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field, SecretStr

from aios.connectors.contract import CheckResult, Operation

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

from aios.errors import (
    ConnectorAuthError,
    InvalidInput,
    PermanentConnectorError,
    TransientConnectorError,
)

__all__ = [
    "Attachment",
    "CommitHook",
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
_LEADING_DOT = re.compile(rb"(?m)^\.")
PROVISIONAL = "accepted by the server pending its reply"


class CommitHook(Protocol):
    """The outbox's commit point (``aios.kernel.stores.outbox.CommitPoint``)."""

    def __call__(self, provisional: dict[str, Any]) -> None: ...

    def confirm(self) -> None: ...

    def revert(self, reason: str) -> None: ...


class _HandOverSoon:
    """While any thread is between its outbox commit and its terminating dot, the interpreter
    hands the GIL over every 0.5 ms instead of every 5 ms (``sys.setswitchinterval``).

    A worker killed in that window loses the message (recorded sent, never left); a thread
    that gave up the GIL in it (sending COMMIT) waits for it again up to the switch interval
    while other threads (other batches, the Temporal worker) run Python.
    """

    interval = 0.0005

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = sys.getswitchinterval()

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, self.interval))
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                sys.setswitchinterval(self._saved)


_HANDOVER_SOON = _HandOverSoon()


@dataclass(frozen=True)
class _FinalDot:
    """What to do around the terminating dot of one message's DATA."""

    commit: CommitHook
    provisional: dict[str, Any]


class _Smtp(smtplib.SMTP):
    """``smtplib.SMTP`` whose DATA holds the terminating dot back until the outbox commits.

    With ``final_dot`` set, ``data`` sends the body (dot-stuffed as ``smtplib`` does, CRLF
    line ends), calls the commit hook, then sends ``.<CRLF>`` and reads the reply; a reply
    other than 250 reverts the commit (``sendmail`` then raises ``SMTPDataError`` as usual).
    Without it, DATA is smtplib's own.
    """

    final_dot: _FinalDot | None = None

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        hold = self.final_dot
        if hold is None:
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if isinstance(msg, str):
            body = smtplib.quotedata(msg).encode("ascii")
        else:
            body = _LEADING_DOT.sub(b"..", bytes(msg))
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.send(body)
        with _HANDOVER_SOON:
            try:
                hold.commit(hold.provisional)  # COMMIT sent to PostgreSQL, answer not awaited
            except BaseException:
                self.close()  # no dot: the server discards what it got
                raise
            self.send(b".\r\n")
        hold.commit.confirm()
        code, reply = self.getreply()
        if code != 250:
            hold.commit.revert(f"the server refused the message: {code} {_text(reply)}")
        return code, reply


class _SmtpSsl(smtplib.SMTP_SSL, _Smtp):
    """``smtplib.SMTP_SSL`` with the same held-back terminating dot."""


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

    def _connect(self) -> _Smtp:
        cfg = self._config
        timeout = cfg.timeout_seconds
        smtp: _Smtp
        if cfg.security == "tls":
            context = ssl.create_default_context()
            smtp = _SmtpSsl(cfg.host, cfg.port, timeout=timeout, context=context)
        else:
            smtp = _Smtp(cfg.host, cfg.port, timeout=timeout)
        try:
            # The terminating dot goes out alone, after the outbox commit: without Nagle's
            # algorithm it leaves at once instead of waiting for the server's delayed ACK of
            # the body (some 40 ms a message).
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        self,
        email: OutgoingEmail,
        *,
        dry_run: bool = False,
        session: SmtpSession | None = None,
        commit: CommitHook | None = None,
    ) -> dict[str, str]:
        """Hand the message to the SMTP server; returns its Message-ID and recipient.

        With ``dry_run`` the message is composed and checked but not sent. With ``session``
        the message goes over that session's connection (no connect and QUIT per message); a
        connection that failed is dropped and the next message opens a new one. With
        ``commit`` (the outbox's commit point) the terminating dot of DATA waits until the
        outbox has committed the message as sent (see the module docstring).
        """
        msg = self.compose(email)
        cfg = self._config
        message_id = str(msg["Message-ID"])
        if dry_run:
            return {"message_id": message_id, "to": email.to, "dry_run": "true"}
        hold = None
        if commit is not None:
            provisional = {"message_id": message_id, "to": email.to, "provisional": PROVISIONAL}
            hold = _FinalDot(commit, provisional)
        try:
            if session is None:
                with self._connect() as smtp:
                    refused = _send_message(smtp, msg, hold)
            else:
                refused = session.send_message(msg, hold)
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
        return {"message_id": message_id, "to": email.to}


def _send_message(
    smtp: _Smtp, msg: EmailMessage, hold: _FinalDot | None
) -> dict[str, tuple[int, bytes]]:
    smtp.final_dot = hold
    try:
        return smtp.send_message(msg)
    finally:
        smtp.final_dot = None


class SmtpSession:
    """A reusable SMTP connection (``SmtpEmailConnector.session``); not thread-safe."""

    def __init__(self, connect: Callable[[], _Smtp]) -> None:
        self._connect = connect
        self._smtp: _Smtp | None = None

    def send_message(
        self, msg: EmailMessage, hold: _FinalDot | None = None
    ) -> dict[str, tuple[int, bytes]]:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            return _send_message(self._smtp, msg, hold)
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

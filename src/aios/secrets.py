"""Scrubbing secrets out of text that came from outside (error messages, replies) or goes out
(workflow history, the kernel, logs, the CLI).

A ``Scrubber`` knows two kinds of secret:

- **Known secrets**: every ``SecretStr`` (or ``SecretBytes``) value in the settings, found by
  walking the ``Settings`` object, nested models, dicts and lists included
  (``Scrubber.from_settings``). A secret whose value is a URL (``AIOS_DATABASE_URL``) is a
  locator with a credential inside: its password and any query value named like a credential
  (``password``, ``secret``, ``token``, ``key``...) are the secrets, not the host or database
  name, which ordinary connection errors name. Plain URL settings that carry a password
  (``https://user:pw@host``) give that password too. Each known secret is redacted

  - wherever it appears, also JSON-escaped or percent-encoded;
  - where any run of ``FRAGMENT`` (12) or more of its characters appears: a message cut in the
    middle of a key ("... sk-proj-abc123def456...") or a key with a few characters changed
    keeps no usable part of it;
  - in a masked echo: a token with a mask in it (``**``, ``•``, ``…``, ``...``) whose visible
    head is a prefix, or whose visible tail is a suffix, of a known secret (at least
    ``MASK_EDGE`` = 4 characters), as OpenAI prints ``sk-proj-ab****wxyz``: the whole token goes.

- **Key-shaped strings**, whoever they belong to: OpenAI keys (``sk-...``, ``sk-proj-...``),
  Stripe keys (``sk_live_``, ``sk_test_``, ``rk_...``, ``whsec_...``), HubSpot private app
  tokens (``pat-na1-...``), ``Bearer <token>``, the value of an ``Authorization`` /
  ``api-key`` header, the value after ``api_key=``, ``token=``, ``password=``... (and the
  JSON form ``"api_key": "..."``), and the password in a URL's ``user:password@``.

Everything found is replaced by ``MARKER`` (``[redacted]``); a label in front of a value
(``api_key=``, ``Bearer``) is kept, so the text still says what was there. A JSON text stays
JSON: no rule stops inside an escape sequence (a model's reply is scrubbed before it is
parsed).

Short secrets. A secret of fewer than ``MIN_SECRET`` (8) characters cannot be searched for by
value without wrecking ordinary text: a password ``admin`` would erase every "admin" in every
log line, and the fragment and mask rules would fire on common syllables. So:

- 8 characters or more: every rule above;
- 4 to 7 characters with at least one letter and one non-letter (``pa55``, ``s3cr3t!``):
  redacted as a whole token only (not inside a longer word), never by fragment or mask;
- shorter, or only letters, or only digits: not searched by value. Such a value is still
  redacted where its context gives it away (``password=...``, a URL's ``user:pw@``, an
  ``Authorization`` header), which is where libraries echo credentials. A deployment should
  not use a secret that short; nothing here can make it safe.

Where scrubbing happens (one place per direction):

- activity errors into workflow history: ``aios.activities.errors.translating_errors``;
- model replies and provider errors into the runner, ledger, drafts and history:
  ``aios.agents.providers.OpenAIChat.complete``;
- connector errors and replies into activities, the outbox and history:
  ``aios.connectors.runtime.ConnectorRuntime``;
- log lines: the processor in ``aios.logs``.

Components get their ``Scrubber`` through their constructors (``aios.workers.services``
builds it from the settings). Log processors and the activity error decorator have no
constructor to receive one, so there is also one **process-wide scrubber**: ``install`` adds a
scrubber's secrets to it (it only ever learns secrets, never forgets one, so a process that
builds services for several settings objects scrubs all of them) and ``installed`` returns it.
``Services`` installs its settings' secrets when it is built and when it assembles
activities; until then the process-wide scrubber still redacts key-shaped strings. Nothing is
read from the environment at import time.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = [
    "FRAGMENT",
    "MARKER",
    "MIN_SECRET",
    "Scrubber",
    "install",
    "installed",
    "secrets_in",
]

MARKER = "[redacted]"
MIN_SECRET = 8  # shorter known secrets are matched as whole tokens at most (see above)
MIN_SHORT = 4
FRAGMENT = 12  # this many consecutive characters of a known secret are redacted anywhere
MASK_EDGE = 4  # a masked token is a known secret's echo if this much of its head/tail shows

T = TypeVar("T")

_URL = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_CREDENTIAL_NAME = re.compile(
    r"pass|pwd|secret|token|key|auth|credential|signature|sig$", re.IGNORECASE
)
# A token with a mask run in it: "sk-proj-ab****wxyz", "abc…xyz", "abc...xyz", "ab••••yz".
_MASK_RUN = re.compile(r"(?:[*\u2022\u25cf]{2,}|\u2026|\.{3,})")
_MASK_CHARS = frozenset("*\u2022\u25cf\u2026.")

_NAMES = (
    r"(?:[a-z0-9]+[_\-]){0,4}(?:api[_\-]?key|apikey|access[_\-]?token|auth[_\-]?token|"
    r"refresh[_\-]?token|client[_\-]?secret|secret[_\-]?key|secret|password|passwd|pwd|token)"
)
# (pattern, flags): a named group "keep" survives, the rest of the match becomes MARKER.
_PATTERN_SOURCES: tuple[tuple[str, int], ...] = (
    # the password in scheme://user:password@host
    (r"(?P<keep>\b[a-z][a-z0-9+.\-]*://[^\s/:@\"'<>]*:)[^\s/@\"'<>\\]+(?=@)", re.IGNORECASE),
    # Authorization / api-key header values, also as JSON members: the whole value
    (
        r"(?P<keep>\b(?:proxy-authorization|authorization|x-api-key|api-key|"
        r"ocp-apim-subscription-key)[\"']?\s*[:=]\s*[\"']?)(?:\\.|[^\r\n\"',}\\])+",
        re.IGNORECASE,
    ),
    # Bearer tokens anywhere (a token has a digit or a symbol; "bearer instruments" is prose)
    (
        r"(?P<keep>\bbearer\s+)(?=[A-Za-z0-9._~+/\-]*[0-9._~+/\-])[A-Za-z0-9._~+/\-]{8,}=*",
        re.IGNORECASE,
    ),
    # OpenAI keys, masked or not: sk-..., sk-proj-..., sk-svcacct-...
    (r"\bsk-(?=[\w\-]*[0-9*\u2022\u2026])[\w\-*\u2022\u2026]{10,}", 0),
    # Stripe secret and restricted keys, webhook signing secrets
    (r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9*]{6,}", 0),
    (r"\bwhsec_[A-Za-z0-9+/=*]{6,}", 0),
    # HubSpot private app tokens: pat-na1-xxxxxxxx-xxxx-...
    (r"\bpat-[a-z]{2,3}\d?-[A-Za-z0-9\-*]{12,}", re.IGNORECASE),
    # name=value (query strings, env files, logfmt)
    (rf"(?P<keep>\b{_NAMES}[\"']?\s*=\s*[\"']?)[^\s\"'&,;<>\\]+", re.IGNORECASE),
    # "name": "value" (JSON, YAML, Python reprs)
    (rf"(?P<keep>[\"']{_NAMES}[\"']\s*:\s*[\"'])(?:\\.|[^\"'\\])+(?=[\"'])", re.IGNORECASE),
)
_PATTERNS = tuple(re.compile(source, flags) for source, flags in _PATTERN_SOURCES)


def _keep_label(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep") or ""
    return keep + MARKER


def _is_token_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_-+/="


def _replace_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each (start, end) span, in order and not overlapping, set to MARKER."""
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(MARKER)
        last = end
    out.append(text[last:])
    return "".join(out)


def _mixed(text: str) -> bool:
    """Has a letter and a non-letter: a short token unlikely to be an ordinary word."""
    return any(c.isalpha() for c in text) and any(not c.isalpha() for c in text)


def _secret_parts(value: str) -> Iterator[str]:
    """The secrets inside one secret setting's value (see the module docstring for URLs)."""
    if not value:
        return
    if _URL.match(value.strip()):
        yield from _url_credentials(value.strip())
        return
    yield value


def _url_credentials(url: str) -> Iterator[str]:
    """The password and credential-named query values of a URL, raw and decoded."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        yield password
        yield unquote(password)
    for name, val in parse_qsl(parts.query, keep_blank_values=False):
        if _CREDENTIAL_NAME.search(name) and val:
            yield val


def secrets_in(value: Any) -> Iterator[str]:
    """Every secret in ``value``: a settings object, a model, a dict, a list or a secret."""
    if isinstance(value, SecretStr):
        yield from _secret_parts(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        yield from _secret_parts(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secrets_in(getattr(value, name, None))
        for extra in (value.model_extra or {}).values():
            yield from secrets_in(extra)
    elif isinstance(value, dict):
        for item in value.values():
            yield from secrets_in(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from secrets_in(item)
    elif isinstance(value, str) and _URL.match(value.strip()):
        yield from _url_credentials(value.strip())  # a plain URL with a password in it


def _variants(secret: str) -> set[str]:
    """How a secret may be written in a reply: as is, JSON-escaped, percent-encoded."""
    found = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
    return {v for v in found if len(v) >= MIN_SECRET}


class Scrubber:
    """Redacts known secrets and key-shaped strings from text (see the module docstring)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        given = frozenset(s for s in secrets if s)
        self._given = given
        known = sorted({s for s in given if len(s) >= MIN_SECRET}, key=len, reverse=True)
        short = sorted(
            {s for s in given if MIN_SHORT <= len(s) < MIN_SECRET and _mixed(s)},
            key=len,
            reverse=True,
        )
        self._known = tuple(known)
        variants = sorted({v for s in known for v in _variants(s)}, key=len, reverse=True)
        self._exact = re.compile("|".join(map(re.escape, variants))) if variants else None
        self._short = (
            re.compile(
                r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, short)) + r")(?![A-Za-z0-9])"
            )
            if short
            else None
        )
        self._fragments = frozenset(
            s[i : i + FRAGMENT] for s in known for i in range(len(s) - FRAGMENT + 1)
        )

    @classmethod
    def from_settings(cls, settings: Any) -> Scrubber:
        """Every ``SecretStr`` of ``settings`` (nested ones too) and URL passwords."""
        return cls(secrets_in(settings))

    @property
    def secret_count(self) -> int:
        """How many distinct secret values this scrubber was given."""
        return len(self._given)

    def merged(self, other: Scrubber) -> Scrubber:
        """A scrubber that knows the secrets of both."""
        if other._given <= self._given:
            return self
        return Scrubber(self._given | other._given)

    # --- text -----------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` with every secret it holds replaced by ``MARKER``."""
        if not text:
            return text
        if self._exact is not None:
            text = self._exact.sub(MARKER, text)
        if self._known:
            text = self._without_masked_echoes(text)
            text = self._without_fragments(text)
        if self._short is not None:
            text = self._short.sub(MARKER, text)
        for pattern in _PATTERNS:
            text = pattern.sub(_keep_label, text)
        return text

    def _without_masked_echoes(self, text: str) -> str:
        """Redact each token with a mask run whose visible head or tail is a known secret's."""
        spans: list[tuple[int, int]] = []
        for run in _MASK_RUN.finditer(text):
            if spans and run.start() < spans[-1][1]:
                continue  # inside a token already taken
            start = run.start()
            while start > 0 and _is_token_char(text[start - 1]):
                start -= 1
            end = run.end()
            while end < len(text) and (_is_token_char(text[end]) or text[end] in _MASK_CHARS):
                end += 1
            while end > run.end() and text[end - 1] == ".":
                end -= 1  # a full stop after the token is the sentence's
            token = text[start:end]
            edges = "".join(_MASK_CHARS)
            head = _MASK_RUN.split(token, maxsplit=1)[0].strip(edges)
            tail = _MASK_RUN.split(token)[-1].strip(edges)
            if self._echoes(head, tail):
                spans.append((start, end))
        return _replace_spans(text, spans)

    def _echoes(self, head: str, tail: str) -> bool:
        for secret in self._known:
            if len(head) >= MASK_EDGE and secret.startswith(head):
                return True
            if len(tail) >= MASK_EDGE and secret.endswith(tail):
                return True
        return False

    def _without_fragments(self, text: str) -> str:
        if not self._fragments or len(text) < FRAGMENT:
            return text
        spans: list[list[int]] = []
        for i in range(len(text) - FRAGMENT + 1):
            if text[i : i + FRAGMENT] in self._fragments:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + FRAGMENT
                else:
                    spans.append([i, i + FRAGMENT])
        return _replace_spans(text, [(a, b) for a, b in spans])

    # --- values and exceptions ------------------------------------------------------------

    def scrub_value(self, value: T) -> T:
        """``value`` with every string in it scrubbed: str, dict (keys and values), list,
        tuple, pydantic model (a copy, when something changed); anything else as is."""
        return cast(T, self._value(value))

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self._value(k): self._value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._value(v) for v in value)
        if isinstance(value, BaseModel):
            updates = {}
            for name in type(value).model_fields:
                old = getattr(value, name, None)
                new = self._value(old)
                if new != old:
                    updates[name] = new
            return value.model_copy(update=updates) if updates else value
        return value

    def scrub_exception(self, exc: BaseException) -> bool:
        """Scrub ``exc``'s arguments in place; whether its text is clean afterwards.

        ``str()`` of an ``AiosError`` (and of most exceptions) is made from its arguments, so
        this is enough for them; an exception that renders its text from other attributes
        (``OSError``) may still hold a secret: the caller must replace it then."""
        text = str(exc)
        if self.scrub(text) == text:
            return True
        try:
            exc.args = tuple(self._value(a) for a in exc.args)
        except (AttributeError, TypeError):
            return False
        text = str(exc)
        return self.scrub(text) == text


# --- the process-wide scrubber ------------------------------------------------------------

_lock = threading.Lock()
_process = Scrubber()


def install(scrubber: Scrubber) -> Scrubber:
    """Teach the process-wide scrubber ``scrubber``'s secrets; returns the process-wide one.

    It only ever learns: once installed, a secret stays redacted for the life of the process.
    """
    global _process
    with _lock:
        _process = _process.merged(scrubber)
        return _process


def installed() -> Scrubber:
    """The process-wide scrubber: key-shaped strings and every secret ``install``-ed so far."""
    return _process

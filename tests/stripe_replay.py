"""A local HTTP server that plays "Stripe" from a cassette, for tests of the Stripe provider.

The provider under test uses the real ``stripe`` client over real HTTP; only the address
changes (``api_base=server.url``). A cassette (JSON, ``tests/recordings/stripe/*.json``) lists
interactions in order. Each one names the request we expect and the response Stripe gave::

    {"request": {"method": "POST", "path": "/v1/invoices",
                 "form": {"currency": "eur"},          # the params that matter (subset match)
                 "idempotency_key": "key/invoice"},    # exact value, true (present), false (absent)
     "response": {"status": 200, "headers": {"Request-Id": "req_..."}, "body": {...}}}

The server checks every incoming request against the next expected one. It keeps

- ``received``: every request that reached it (method, path, query, form, idempotency key),
- ``mismatches``: every request that was not what the cassette expected, with the reason;
  such a request gets a 400 with a Stripe-shaped error saying so, and the cassette does not
  advance.

Fault injection: ``inject(status, body, headers, times=n, after=k)`` answers n requests, after k
more have passed, with the given response, without consuming the cassette; ``delay_seconds``
makes it slow (for timeouts).

Record mode refreshes cassettes from a real Stripe test-mode account::

    AIOS_STRIPE_RECORD_KEY=sk_test_... python -c '...'   # see tests/recordings/stripe/README.md

``StripeReplayServer.recording(save_to=path)`` forwards each request to ``upstream`` (default
``https://api.stripe.com``) with the key from the environment in place of whatever the client
sent, and on ``stop()`` writes the cassette. It never writes ``Authorization`` or the key.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

RECORDINGS = Path(__file__).parent / "recordings" / "stripe"
RECORD_KEY_ENV = "AIOS_STRIPE_RECORD_KEY"

# Response headers worth keeping in a cassette; everything else is noise or varies per call.
_KEPT_RESPONSE_HEADERS = (
    "Request-Id",
    "Idempotency-Key",
    "Idempotent-Replayed",
    "Original-Request",
    "Retry-After",
    "Stripe-Should-Retry",
    "Stripe-Version",
)
# Request headers forwarded upstream in record mode (never Authorization: the key comes from env).
_FORWARDED_REQUEST_HEADERS = ("Content-Type", "Idempotency-Key", "Stripe-Version")


@dataclass
class Expected:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    idempotency_key: bool | str | None = None  # None: not checked

    def problems(self, got: Received) -> list[str]:
        out: list[str] = []
        if (got.method, got.path) != (self.method, self.path):
            return [f"expected {self.method} {self.path}, got {got.method} {got.path}"]
        for where, expected, actual in (
            ("query", self.query, got.query),
            ("form", self.form, got.form),
        ):
            for key, value in expected.items():
                if actual.get(key) != value:
                    out.append(f"{where}[{key}]: expected {value!r}, got {actual.get(key)!r}")
        wanted = self.idempotency_key
        if wanted is True and not got.idempotency_key:
            out.append("Idempotency-Key header missing")
        elif wanted is False and got.idempotency_key:
            out.append(f"unexpected Idempotency-Key {got.idempotency_key!r}")
        elif isinstance(wanted, str) and got.idempotency_key != wanted:
            out.append(f"Idempotency-Key: expected {wanted!r}, got {got.idempotency_key!r}")
        return out


@dataclass
class Recorded:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass
class Interaction:
    request: Expected
    response: Recorded


@dataclass
class Cassette:
    interactions: list[Interaction] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, name_or_path: str | Path) -> Cassette:
        path = Path(name_or_path)
        if not path.suffix:
            path = RECORDINGS / f"{name_or_path}.json"
        raw = json.loads(path.read_text())
        return cls(
            interactions=[
                Interaction(Expected(**item["request"]), Recorded(**item["response"]))
                for item in raw["interactions"]
            ],
            meta={k: v for k, v in raw.items() if k != "interactions"},
        )

    def save(self, path: Path) -> None:
        data = {
            **self.meta,
            "interactions": [
                {"request": vars(i.request), "response": vars(i.response)}
                for i in self.interactions
            ],
        }
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    idempotency_key: str | None
    stripe_version: str | None
    injected: bool = False
    forward_headers: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class _Fault:
    response: Recorded
    times: int
    after: int
    delay_seconds: float


def load_response(name: str, file: str = "errors") -> Recorded:
    """A named response from a response library such as ``recordings/stripe/errors.json``."""
    raw = json.loads((RECORDINGS / f"{file}.json").read_text())
    return Recorded(**raw["responses"][name])


class StripeReplayServer:
    """Replays (or records) a cassette on ``http://127.0.0.1:<free port>``; use as a context
    manager or call ``start()``/``stop()``."""

    def __init__(
        self,
        cassette: Cassette | None = None,
        *,
        upstream: str | None = None,
        upstream_key: str | None = None,
        save_to: Path | None = None,
    ) -> None:
        self.cassette = cassette or Cassette()
        self.received: list[Received] = []
        self.mismatches: list[str] = []
        self._next = 0
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._upstream = upstream.rstrip("/") if upstream else None
        self._upstream_key = upstream_key
        self._save_to = save_to
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @classmethod
    def recording(
        cls,
        save_to: Path,
        *,
        upstream: str = "https://api.stripe.com",
        meta: dict[str, Any] | None = None,
    ) -> StripeReplayServer:
        key = os.environ.get(RECORD_KEY_ENV)
        if not key or not key.startswith(("sk_test_", "rk_test_")):
            raise RuntimeError(f"record mode needs a Stripe test-mode key in ${RECORD_KEY_ENV}")
        return cls(
            Cassette(meta=dict(meta or {})), upstream=upstream, upstream_key=key, save_to=save_to
        )

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StripeReplayServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._upstream and self._save_to is not None:
            self.cassette.save(self._save_to)

    def __enter__(self) -> StripeReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests -----------------------------------------------------------------------------

    def inject(
        self,
        status: int | Recorded,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        times: int = 1,
        after: int = 0,
        delay_seconds: float = 0.0,
    ) -> None:
        response = status if isinstance(status, Recorded) else Recorded(status, headers or {}, body)
        with self._lock:
            self._faults.append(_Fault(response, times, after, delay_seconds))

    @property
    def remaining(self) -> list[Interaction]:
        return self.cassette.interactions[self._next :]

    def posts(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST" and not r.injected]

    def assert_clean(self, *, all_used: bool = True) -> None:
        assert self.mismatches == [], "requests that did not match the cassette:\n" + "\n".join(
            self.mismatches
        )
        if all_used:
            left = [f"{i.request.method} {i.request.path}" for i in self.remaining]
            assert left == [], f"cassette interactions never requested: {left}"

    # -- the HTTP side -------------------------------------------------------------------------

    def _answer(self, got: Received, raw_body: bytes, raw_query: str) -> tuple[Recorded, float]:
        with self._lock:
            for fault in self._faults:
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.times > 0:
                    fault.times -= 1
                    got.injected = True
                    self.received.append(got)
                    return fault.response, fault.delay_seconds
            self.received.append(got)
            if self._upstream:
                return self._forward(got, raw_body, raw_query), 0.0
            n = self._next
            if n >= len(self.cassette.interactions):
                problem = (
                    f"request #{len(self.received)}: {got.method} {got.path} "
                    "after the cassette ended"
                )
                self.mismatches.append(problem)
                return _mismatch(problem), 0.0
            expected = self.cassette.interactions[n]
            problems = expected.request.problems(got)
            if problems:
                problem = f"interaction {n} ({got.method} {got.path}): " + "; ".join(problems)
                self.mismatches.append(problem)
                return _mismatch(problem), 0.0
            self._next += 1
            return expected.response, 0.0

    def _forward(self, got: Received, raw_body: bytes, raw_query: str) -> Recorded:
        import requests  # only record mode needs it

        assert self._upstream is not None and self._upstream_key is not None
        headers = {**got.forward_headers, "Authorization": f"Bearer {self._upstream_key}"}
        url = f"{self._upstream}{got.path}" + (f"?{raw_query}" if raw_query else "")
        reply = requests.request(
            got.method, url, data=raw_body or None, headers=headers, timeout=60
        )
        text = reply.text.replace(self._upstream_key, "sk_test_REDACTED")
        recorded = Recorded(
            status=reply.status_code,
            headers={h: reply.headers[h] for h in _KEPT_RESPONSE_HEADERS if h in reply.headers},
            body=json.loads(text) if text else None,
        )
        self.cassette.interactions.append(
            Interaction(
                Expected(
                    method=got.method,
                    path=got.path,
                    query=got.query,
                    form=got.form,
                    idempotency_key=got.idempotency_key or False,
                ),
                recorded,
            )
        )
        return recorded

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length) if length else b""
                got = Received(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    form=dict(parse_qsl(raw_body.decode(), keep_blank_values=True)),
                    idempotency_key=self.headers.get("Idempotency-Key"),
                    stripe_version=self.headers.get("Stripe-Version"),
                    forward_headers={
                        h: self.headers[h] for h in _FORWARDED_REQUEST_HEADERS if h in self.headers
                    },
                )
                response, delay = replay._answer(got, raw_body, parts.query)
                if delay:
                    time.sleep(delay)
                payload = b"" if response.body is None else json.dumps(response.body).encode()
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", "application/json")
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _mismatch(problem: str) -> Recorded:
    return Recorded(
        400,
        {"Request-Id": "req_replay_mismatch"},
        {"error": {"type": "invalid_request_error", "message": f"stripe replay: {problem}"}},
    )

"""A local HTTP server that plays "HubSpot" from recordings, for tests of the HubSpot connector.

The connector under test uses its real ``httpx`` client over real HTTP; only the address
changes (``HubSpotConfig(base_url=server.url, ...)``). A recording (JSON,
``tests/recordings/hubspot/<name>.json``) lists interactions in order, each the request we
expect and the response HubSpot gave::

    {"description": "...", "source": "...",
     "interactions": [
       {"request": {"method": "POST", "path": "/crm/v3/objects/deals/search",
                    "query": {"limit": "1"},                  # subset of the query string
                    "json": {"filterGroups": [...]}},         # subset of the JSON body
        "response": {"status": 200, "headers": {"X-HubSpot-Correlation-Id": "..."},
                     "body": {...}}}]}

``play(name, ...)`` appends a recording's interactions to the queue; every request must match
the next queued interaction: method and path exactly, ``query`` and ``json`` as subsets (a
dict matches if each of its keys matches; a list matches element by element, same length;
anything else must be equal). ``play(name, method=..., path=...)`` points a recording at
another request (an error response can answer any call); the recorded query and body are then
not checked.

The server keeps

- ``received``: every request (method, path, query, JSON body, whether an ``Authorization:
  Bearer`` header came and whether it held the expected token; never the header's value),
- ``mismatches``: every request that was not what the queue expected, with the reason; such a
  request gets a 400 with a HubSpot-shaped error whose message starts with ``hubspot replay:``,
  and the queue does not advance.

Record mode refreshes recordings from a real HubSpot (developer test) account::

    AIOS_HUBSPOT_RECORD_TOKEN=pat-... python ...   # see tests/recordings/hubspot/README.md

``HubSpotReplayServer.recording(save_to=path)`` forwards each request to ``upstream`` (default
``https://api.hubapi.com``) with the token from the environment instead of whatever the client
sent, and on ``stop()`` writes what it saw. It never writes the ``Authorization`` header, and
it replaces the token wherever it appears in a response body.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "RECORDINGS",
    "RECORD_TOKEN_ENV",
    "Expected",
    "HubSpotReplayServer",
    "Interaction",
    "Received",
    "Recorded",
    "Recording",
]

RECORDINGS = Path(__file__).parent / "recordings" / "hubspot"
RECORD_TOKEN_ENV = "AIOS_HUBSPOT_RECORD_TOKEN"

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Response headers worth keeping when recording; the rest vary per call or are transport noise.
_KEPT_HEADERS = ("x-hubspot-correlation-id", "retry-after")
_KEPT_PREFIX = "x-hubspot-ratelimit-"
# The server writes these itself.
_HOP_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding", "connection"}
)


def _subset_problems(where: str, expected: Any, actual: Any) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing")
            else:
                out.extend(_subset_problems(f"{where}.{key}", value, actual[key]))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} items, got {actual!r}"]
        out = []
        for n, (want, got) in enumerate(zip(expected, actual, strict=True)):
            out.extend(_subset_problems(f"{where}[{n}]", want, got))
        return out
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


@dataclass
class Expected:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None  # None: the body is not checked

    def problems(self, got: Received) -> list[str]:
        if (got.method, got.path) != (self.method, self.path):
            return [f"expected {self.method} {self.path}, got {got.method} {got.path}"]
        out = _subset_problems("query", self.query, got.query)
        if self.json is not None:
            out.extend(_subset_problems("json", self.json, got.json))
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
class Recording:
    name: str
    interactions: list[Interaction]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, name_or_path: str | Path) -> Recording:
        path = Path(name_or_path)
        if not path.suffix:
            path = RECORDINGS / f"{name_or_path}.json"
        raw = json.loads(path.read_text())
        return cls(
            name=path.stem,
            interactions=[
                Interaction(
                    Expected(**item["request"]),
                    Recorded(
                        status=int(item["response"]["status"]),
                        headers={
                            str(k): str(v) for k, v in item["response"].get("headers", {}).items()
                        },
                        body=item["response"].get("body"),
                    ),
                )
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
    json: Any
    authorization: Literal["bearer", "other", "missing"]
    token_matches: bool | None  # None: the server was given no token to compare with
    recording: str | None = None  # the recording that answered it (None: a mismatch)

    @property
    def is_write(self) -> bool:
        """A request that changes something: searches are POSTs that only read."""
        return self.method in _WRITE_METHODS and not self.path.endswith("/search")


def _mismatch(problem: str) -> Recorded:
    return Recorded(
        400,
        {"X-HubSpot-Correlation-Id": "00000000-0000-4000-8000-000000000000"},
        {
            "status": "error",
            "message": f"hubspot replay: {problem}",
            "correlationId": "00000000-0000-4000-8000-000000000000",
            "category": "VALIDATION_ERROR",
        },
    )


class HubSpotReplayServer:
    """Replays (or records) HubSpot interactions on ``http://127.0.0.1:<free port>``; use as a
    context manager or call ``start()``/``stop()``."""

    def __init__(
        self,
        *,
        expected_token: str | None = None,
        upstream: str | None = None,
        upstream_token: str | None = None,
        save_to: Path | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.received: list[Received] = []
        self.mismatches: list[str] = []
        self._queue: list[tuple[str, Interaction]] = []
        self._expected_token = expected_token
        self._upstream = upstream.rstrip("/") if upstream else None
        self._upstream_token = upstream_token
        self._save_to = save_to
        self._recorded = Recording(name="recorded", interactions=[], meta=dict(meta or {}))
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @classmethod
    def recording(
        cls,
        save_to: Path,
        *,
        upstream: str = "https://api.hubapi.com",
        meta: dict[str, Any] | None = None,
    ) -> HubSpotReplayServer:
        token = os.environ.get(RECORD_TOKEN_ENV)
        if not token:
            raise RuntimeError(
                f"record mode needs a HubSpot private app token in ${RECORD_TOKEN_ENV}"
            )
        return cls(upstream=upstream, upstream_token=token, save_to=save_to, meta=meta)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HubSpotReplayServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._upstream and self._save_to is not None:
            self._recorded.save(self._save_to)

    def __enter__(self) -> HubSpotReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests -----------------------------------------------------------------------------

    def play(
        self,
        recording: str | Recording,
        *,
        method: str | None = None,
        path: str | None = None,
        query: dict[str, str] | None = None,
        json: Any = None,
    ) -> Recording:
        """Queue a recording's interactions. ``method``/``path`` re-target every one of them
        to another request; its query and body are then checked only against ``query`` and
        ``json`` (if given), not against the recorded request's."""
        loaded = recording if isinstance(recording, Recording) else Recording.load(recording)
        retarget = method is not None or path is not None
        with self._lock:
            for interaction in loaded.interactions:
                item = copy.deepcopy(interaction)
                if retarget:
                    item.request = Expected(
                        method=method or item.request.method,
                        path=path or item.request.path,
                        query=dict(query or {}),
                        json=json,
                    )
                self._queue.append((loaded.name, item))
        return loaded

    @property
    def remaining(self) -> list[str]:
        return [f"{name}: {i.request.method} {i.request.path}" for name, i in self._queue]

    def writes(self) -> list[Received]:
        return [r for r in self.received if r.is_write]

    def assert_clean(self, *, all_used: bool = True) -> None:
        assert self.mismatches == [], "requests that did not match the recordings:\n" + "\n".join(
            self.mismatches
        )
        if all_used:
            assert self.remaining == [], f"recorded interactions never requested: {self.remaining}"

    # -- the HTTP side -------------------------------------------------------------------------

    def _answer(self, got: Received, raw_path: str, raw_body: bytes) -> Recorded:
        with self._lock:
            self.received.append(got)
            n = len(self.received)
            if self._upstream:
                got.recording = "upstream"
                return self._forward(got, raw_path, raw_body)
            if not self._queue:
                problem = f"request #{n} ({got.method} {got.path}): nothing queued"
                self.mismatches.append(problem)
                return _mismatch(problem)
            name, expected = self._queue[0]
            problems = expected.request.problems(got)
            if problems:
                problem = f"request #{n} ({got.method} {got.path}) vs {name}: " + "; ".join(
                    problems
                )
                self.mismatches.append(problem)
                return _mismatch(problem)
            self._queue.pop(0)
            got.recording = name
            return expected.response

    def _forward(self, got: Received, raw_path: str, raw_body: bytes) -> Recorded:
        import httpx  # only record mode needs it here

        assert self._upstream is not None and self._upstream_token is not None
        reply = httpx.request(
            got.method,
            f"{self._upstream}{raw_path}",
            content=raw_body or None,
            headers={
                "Authorization": f"Bearer {self._upstream_token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=60,
        )
        text = reply.text.replace(self._upstream_token, "<redacted>")
        recorded = Recorded(
            status=reply.status_code,
            headers={  # as the server spelled them
                name: value
                for name, value in (
                    (raw_name.decode("latin-1"), raw_value.decode("latin-1"))
                    for raw_name, raw_value in reply.headers.raw
                )
                if name.lower() in _KEPT_HEADERS or name.lower().startswith(_KEPT_PREFIX)
            },
            body=json.loads(text) if text.strip() else None,
        )
        self._recorded.interactions.append(
            Interaction(Expected(got.method, got.path, got.query, got.json), recorded)
        )
        return recorded

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw_body) if raw_body else None
                except ValueError:
                    body = {"<not json>": raw_body.decode(errors="replace")}
                auth = self.headers.get("Authorization")
                scheme, _, credential = (auth or "").partition(" ")
                kind: Literal["bearer", "other", "missing"] = (
                    "missing" if auth is None else "bearer" if scheme == "Bearer" else "other"
                )
                expected = replay._expected_token
                got = Received(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    json=body,
                    authorization=kind,
                    token_matches=None if expected is None else credential == expected,
                )
                response = replay._answer(got, self.path, raw_body)
                payload = b"" if response.body is None else json.dumps(response.body).encode()
                try:
                    self.send_response(response.status)
                    if payload:
                        self.send_header("Content-Type", "application/json;charset=utf-8")
                    for name, value in response.headers.items():
                        if name.lower() not in _HOP_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

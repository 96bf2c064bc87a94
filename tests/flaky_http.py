"""A scriptable local HTTP server for connector tests: failures, rate limits and slow answers
on demand, over real HTTP.

The code under test talks to it like to any server; only the address changes::

    with FlakyHttpServer() as server:
        server.fail(2)                        # the next two requests get a 500
        server.rate_limit(retry_after=2)      # then one 429 with Retry-After: 2
        server.slow(1.5)                      # then one default reply, 1.5 s late
        server.script(Reply(201, body=b"created"))
        ...                                   # point the client at server.url
        assert [r.method for r in server.received] == ["POST", "POST", ...]

Every request, whatever its method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS) or path,
takes the next scripted ``Reply`` (first in, first out). When none is left it gets
``server.default``, a 200 with the JSON body ``{}`` unless a test sets another. ``script``,
``fail``, ``rate_limit``, ``slow`` and ``drop`` all append to the same queue, so they compose in the
order they are called; ``reset()`` empties the queue and the log.

``received`` is a snapshot of every request so far, in arrival order: method, path (with the
query string), headers with lower-cased names, the raw body, and when it arrived
(``time.monotonic()``). A request is logged when it arrives, before any delay. To wait for
requests made from another thread or task, use ``wait_for(n)`` rather than sleeping.

A delayed reply waits ``delay`` seconds before answering; a client that gave up meanwhile is
ignored. A reply with ``status=0`` (see ``drop``) closes the connection without answering,
as a crashed server or a broken proxy would. Stopping the server cuts every pending delay
short. The server speaks HTTP/1.0 (one request per connection), so every request is a fresh
connection and reaches the script.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FlakyHttpServer", "Received", "Reply"]

# The server writes these itself from the actual payload.
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body`` may be ``str`` (sent as UTF-8); ``delay`` is in seconds;
    ``status=0`` hangs up without answering (after ``delay``)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str = b""
    delay: float = 0.0

    @classmethod
    def json(
        cls,
        value: Any,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """A reply whose body is ``value`` as JSON, with ``Content-Type: application/json``."""
        return cls(
            status=status,
            headers={"Content-Type": "application/json", **(headers or {})},
            body=json.dumps(value).encode(),
            delay=delay,
        )

    @property
    def payload(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


class FlakyHttpServer:
    """Serves scripted replies on ``http://127.0.0.1:<free port>``; use as a context manager
    or call ``start()``/``stop()``."""

    def __init__(self, default: Reply | None = None) -> None:
        self._default = default if default is not None else Reply.json({})
        self._script: deque[Reply] = deque()
        self._received: list[Received] = []
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FlakyHttpServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> FlakyHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting -----------------------------------------------------------------------------

    @property
    def default(self) -> Reply:
        """The reply once the script is used up (initially 200 with ``{}``)."""
        with self._changed:
            return self._default

    @default.setter
    def default(self, reply: Reply) -> None:
        with self._changed:
            self._default = reply

    def script(self, *replies: Reply) -> None:
        """Append ``replies`` to the queue; each request takes the next one."""
        with self._changed:
            self._script.extend(replies)

    def fail(
        self,
        n: int = 1,
        status: int = 500,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
    ) -> None:
        """The next ``n`` requests (after anything already scripted) get ``status``."""
        self.script(*[Reply(status=status, headers=dict(headers or {}), body=body)] * n)

    def rate_limit(
        self, retry_after: float | str = 2, times: int = 1, *, status: int = 429
    ) -> None:
        """``times`` replies of 429 with ``Retry-After: <retry_after>`` (seconds or HTTP date)."""
        value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        self.script(*[Reply(status=status, headers={"Retry-After": value})] * times)

    def slow(self, seconds: float, times: int = 1, *, reply: Reply | None = None) -> None:
        """``times`` replies that answer ``seconds`` late: ``reply``, or the current default."""
        late = replace(reply if reply is not None else self.default, delay=seconds)
        self.script(*[late] * times)

    def drop(self, times: int = 1, *, after: float = 0.0) -> None:
        """``times`` requests get no answer: the connection closes ``after`` seconds."""
        self.script(*[Reply(status=0, delay=after)] * times)

    def reset(self) -> None:
        """Forget the queued replies and the received requests (the default stays)."""
        with self._changed:
            self._script.clear()
            self._received.clear()

    # -- inspection ----------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order (a copy)."""
        with self._changed:
            return list(self._received)

    @property
    def pending(self) -> int:
        """Scripted replies not served yet."""
        with self._changed:
            return len(self._script)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least ``n`` requests arrived; ``TimeoutError`` after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= n, timeout):
                raise TimeoutError(f"{len(self._received)} of {n} requests after {timeout} s")
            return list(self._received)

    # -- the HTTP side -------------------------------------------------------------------------

    def _take(self, request: Received) -> Reply:
        with self._changed:
            self._received.append(request)
            self._changed.notify_all()
            return self._script.popleft() if self._script else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self._read_body()
                request = Received(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
                reply = server._take(request)
                if reply.delay > 0 and server._closing.wait(reply.delay):
                    return  # stopping: drop the connection unanswered
                if reply.status == 0:
                    self.close_connection = True
                    return  # hang up: the client sees the connection close, no reply
                payload = reply.payload
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        if name.lower() not in _OWN_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks: list[bytes] = []
                    while True:
                        size_line = self.rfile.readline().split(b";")[0].strip()
                        size = int(size_line or b"0", 16)
                        if size == 0:
                            while self.rfile.readline().strip():
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

"""A local HTTP server that answers Chat Completions calls from recordings, for tests of our
LLM agents against OpenAI and Azure OpenAI.

The code under test uses the real ``openai`` client over real HTTP; only the address changes::

    with ModelReplayServer() as server:
        server.queue("openai_intake_ok")
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
        ...
        azure = openai.AzureOpenAI(azure_endpoint=server.azure_endpoint,
                                   api_version="2024-10-21", api_key="test", max_retries=0)

A recording (JSON, ``tests/recordings/openai/<name>.json``) is one HTTP response of one
provider::

    {"provider": "openai" | "azure",
     "scenario": "what this is",
     "response": {"status": 200, "headers": {...}, "body": {...}}}

``queue(name, ...)`` appends a recording to a FIFO; every accepted request takes the next one.
For a 200 ``chat.completion`` the assistant content, the model and the token usage can be
swapped at queue time (``content=``; a dict is sent as compact JSON, ``model=``, ``usage=``),
so tests vary what the model "said" while the envelope stays the recorded one.

Accepted requests:

- ``POST /v1/chat/completions`` (provider ``openai``),
- ``POST /openai/deployments/<deployment>/chat/completions?api-version=<v>`` (provider
  ``azure``).

The server keeps

- ``received``: every accepted request (provider, path, deployment, api-version, headers with
  the values of ``authorization`` and ``api-key`` redacted, the JSON body, when it arrived),
- ``mismatches``: every request that could not be answered as the test intended (unknown path,
  empty queue, the next recording belongs to the other provider, a body that is not JSON); such
  a request gets a 500 with an OpenAI-shaped error whose message starts with ``replay:``, and
  the queue does not advance.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = ["RECORDINGS", "ModelReplayServer", "Received", "Recording"]

RECORDINGS = Path(__file__).parent / "recordings" / "openai"

Provider = Literal["openai", "azure"]

_OPENAI_PATH = "/v1/chat/completions"
_AZURE_PATH = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")
_SECRET_HEADERS = ("authorization", "api-key")
# The server writes these itself; a recording's own values would contradict the real payload.
_HOP_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding", "connection"}
)


@dataclass(frozen=True)
class Recording:
    name: str
    provider: Provider
    scenario: str
    status: int
    headers: dict[str, str]
    body: Any

    @classmethod
    def load(cls, name: str) -> Recording:
        raw = json.loads((RECORDINGS / f"{name}.json").read_text())
        response = raw["response"]
        provider = raw["provider"]
        if provider not in ("openai", "azure"):
            raise ValueError(f"recording {name}: unknown provider {provider!r}")
        return cls(
            name=name,
            provider=provider,
            scenario=raw.get("scenario", ""),
            status=int(response["status"]),
            headers={str(k): str(v) for k, v in response.get("headers", {}).items()},
            body=response.get("body"),
        )

    @property
    def is_chat_completion(self) -> bool:
        body = self.body
        return (
            self.status == 200
            and isinstance(body, dict)
            and body.get("object") == "chat.completion"
            and bool(body.get("choices"))
        )


@dataclass
class Received:
    provider: Provider
    path: str
    deployment: str | None
    api_version: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class ModelReplayServer:
    """Serves queued recordings on ``http://127.0.0.1:<free port>``; use as a context manager
    or call ``start()``/``stop()``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.mismatches: list[str] = []
        self._queue: list[Recording] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def azure_endpoint(self) -> str:
        return self.url

    def start(self) -> ModelReplayServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ModelReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests -----------------------------------------------------------------------------

    def queue(
        self,
        name: str,
        *,
        content: str | dict[str, Any] | None = None,
        model: str | None = None,
        usage: tuple[int, int] | None = None,
        times: int = 1,
    ) -> None:
        """Append ``recordings/openai/<name>.json`` to the answer queue ``times`` times,
        optionally with the assistant content, model or token usage swapped."""
        if times < 1:
            raise ValueError("times must be at least 1")
        recording = Recording.load(name)
        if content is not None or model is not None or usage is not None:
            if not recording.is_chat_completion:
                raise ValueError(
                    f"recording {name} is not a 200 chat.completion; "
                    "content/model/usage cannot be replaced"
                )
            body = copy.deepcopy(recording.body)
            if content is not None:
                text = (
                    content
                    if isinstance(content, str)
                    else json.dumps(content, ensure_ascii=False, separators=(",", ":"))
                )
                body["choices"][0]["message"]["content"] = text
            if model is not None:
                body["model"] = model
            if usage is not None:
                prompt_tokens, completion_tokens = usage
                counts = body.setdefault("usage", {})
                counts["prompt_tokens"] = prompt_tokens
                counts["completion_tokens"] = completion_tokens
                counts["total_tokens"] = prompt_tokens + completion_tokens
            recording = Recording(
                name=recording.name,
                provider=recording.provider,
                scenario=recording.scenario,
                status=recording.status,
                headers=dict(recording.headers),
                body=body,
            )
        with self._lock:
            self._queue.extend([recording] * times)

    @property
    def remaining(self) -> list[str]:
        with self._lock:
            return [r.name for r in self._queue]

    def assert_clean(self, *, all_used: bool = True) -> None:
        assert self.mismatches == [], "replay mismatches:\n" + "\n".join(self.mismatches)
        if all_used:
            assert self.remaining == [], f"recordings queued but never requested: {self.remaining}"

    # -- the HTTP side -------------------------------------------------------------------------

    def _answer(
        self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        provider: Provider | None = None
        deployment: str | None = None
        api_version: str | None = None
        if method == "POST" and parts.path == _OPENAI_PATH:
            provider = "openai"
        elif method == "POST" and (match := _AZURE_PATH.match(parts.path)):
            provider = "azure"
            deployment = match["deployment"]
            api_version = query.get("api-version", [None])[0]
        with self._lock:
            if provider is None:
                return self._mismatch(f"{method} {raw_path} is not a Chat Completions endpoint")
            try:
                body = json.loads(raw_body or b"null")
            except ValueError:
                body = None
            self.received.append(
                Received(
                    provider=provider,
                    path=parts.path,
                    deployment=deployment,
                    api_version=api_version,
                    headers=headers,
                    body=body if isinstance(body, dict) else {},
                    at=time.monotonic(),
                )
            )
            n = len(self.received)
            if not isinstance(body, dict):
                return self._mismatch(f"request #{n} ({provider}): the body is not a JSON object")
            if provider == "azure" and api_version is None:
                return self._mismatch(f"request #{n} (azure): no api-version query parameter")
            if not self._queue:
                return self._mismatch(f"request #{n} ({provider}): no recording queued")
            nxt = self._queue[0]
            if nxt.provider != provider:
                return self._mismatch(
                    f"request #{n} ({provider} {parts.path}): the next recording {nxt.name} "
                    f"is for provider {nxt.provider}"
                )
            self._queue.pop(0)
            return nxt.status, nxt.headers, nxt.body

    def _mismatch(self, problem: str) -> tuple[int, dict[str, str], Any]:
        # Called with the lock held.
        self.mismatches.append(problem)
        error = {"message": f"replay: {problem}", "type": "server_error"}
        body = {"error": {**error, "param": None, "code": None}}
        return 500, {"x-request-id": "req_replay_mismatch"}, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length) if length else b""
                headers = {
                    name.lower(): "<redacted>" if name.lower() in _SECRET_HEADERS else value
                    for name, value in self.headers.items()
                }
                status, reply_headers, body = replay._answer(
                    self.command, self.path, headers, raw_body
                )
                payload = b"" if body is None else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for name, value in reply_headers.items():
                        if name.lower() not in _HOP_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

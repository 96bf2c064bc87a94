"""Hosted model providers: OpenAI and Azure OpenAI through the official ``openai`` library.

Both speak Chat Completions with structured output (``response_format`` of type
``json_schema``); they differ only in how the client is built (``chat_model``): the base URL and
an API key for OpenAI, the resource endpoint, API version, deployment names and an API key or a
Microsoft Entra token for Azure. The client's own retries are off: Temporal's retry policy
decides, and ``ModelUnavailable.retry_after`` carries the provider's Retry-After to it.

Errors are classified here and nowhere else:

==========================================  =================================================
429, 5xx, 408, timeouts, connection errors  ``ModelUnavailable`` (retried, Retry-After kept)
content filter (a 400 with code            ``ModelRefused(reason="content_filter")``
``content_filter``, or a reply that stops
with ``finish_reason="content_filter"``)
the model's own refusal                    ``ModelRefused(reason="refusal")``
401, 403                                   ``ModelRefused(reason="auth")``
any other 4xx (bad request, no such        ``ModelRefused(reason="invalid_request")``
model or deployment, context too long)
a 200 that is not UTF-8, not JSON or not   ``UnusableReply(reason="unusable_reply")``
a chat completion
==========================================  =================================================

A 200 whose body is not UTF-8, not JSON, or not shaped like a chat completion (a proxy's HTML
page, a truncated body, bytes in another encoding) is ``UnusableReply``: not retried by Temporal
(the same request would get the same answer), and the agent runner treats it like invalid
output (one repair, the next tier, then a hold for the operator at gate ``agent``). The body
is read by us, not by the ``openai`` client, which would raise ``UnicodeDecodeError`` or
``JSONDecodeError`` unclassified, or hand back a string instead of a completion.

Messages name the provider, the status and the provider's own message; they never carry the
key or the prompt. ``OpenAIChat.complete`` is the one boundary between the provider and AiOs:
every error it raises and every reply it returns (content, refusal, model name) is scrubbed
of known secrets and key-shaped strings (``aios.secrets``) before the runner, the ledger, a
draft or workflow history sees it. A provider echoing the key in a 401, or a model repeating
it in a completion, leaves ``[redacted]`` behind.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from aios.errors import ModelError, ModelRefused, ModelUnavailable, UnusableReply
from aios.secrets import Scrubber, installed

__all__ = [
    "ChatModel",
    "ModelReply",
    "OpenAIChat",
    "classify_openai_error",
    "read_completion",
    "retry_after",
]

ProviderName = Literal["openai", "azure"]
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class ModelReply:
    content: str | None
    model: str  # as the provider reports it ("gpt-4o-mini-2024-07-18")
    input_tokens: int
    output_tokens: int
    finish_reason: str


class ChatModel(Protocol):
    """What the runner needs from a hosted provider."""

    name: str

    def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, Any],
        max_output_tokens: int,
    ) -> ModelReply: ...


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(BaseModel):
    """The parts of a chat completion we read; anything else may be there."""

    model_config = ConfigDict(extra="allow")

    model: str = ""
    choices: list[_Choice]
    usage: _Usage | None = None


def read_completion(body: bytes, content_type: str | None, provider: str) -> _Completion:
    """The completion in a 200 reply's body, or ``UnusableReply`` saying why there is none."""
    kind = (content_type or "no content type").split(";")[0].strip()
    what = f"{kind}, {len(body)} bytes"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnusableReply(
            provider,
            f"unusable reply: the body is not UTF-8 (byte 0x{body[exc.start]:02x} at "
            f"position {exc.start}; {what})",
            reason="unusable_reply",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnusableReply(
            provider,
            f"unusable reply: the body is not JSON ({exc.msg} at character {exc.pos}; {what})",
            reason="unusable_reply",
        ) from None
    try:
        return _Completion.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise UnusableReply(
            provider,
            f"unusable reply: the body is not a chat completion ({where}: {first['msg']})",
            reason="unusable_reply",
        ) from None


class OpenAIChat:
    """Chat Completions over an ``openai.OpenAI`` or ``openai.AzureOpenAI`` client.

    ``model`` is a model name for OpenAI and a deployment name for Azure. ``scrubber`` knows
    the secrets to keep out of replies and errors (``aios.workers.services`` builds it from
    the settings); without one, the process-wide scrubber (``aios.secrets.installed``).
    """

    def __init__(
        self, client: openai.OpenAI, *, name: ProviderName, scrubber: Scrubber | None = None
    ) -> None:
        self._client = client
        self.name: str = name
        self._scrubber = scrubber

    @property
    def scrubber(self) -> Scrubber:
        return self._scrubber or installed()

    def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, Any],
        max_output_tokens: int,
    ) -> ModelReply:
        """One call; every error raised and every reply returned is scrubbed here."""
        scrub = self.scrubber
        try:
            reply = self._complete(scrub, model, messages, schema_name, schema, max_output_tokens)
        except ModelError as exc:
            scrub.scrub_exception(exc)
            raise
        return dataclasses.replace(
            reply,
            content=None if reply.content is None else scrub.scrub(reply.content),
            model=scrub.scrub(reply.model),
            finish_reason=scrub.scrub(reply.finish_reason),
        )

    def _complete(
        self,
        scrub: Scrubber,
        model: str,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, Any],
        max_output_tokens: int,
    ) -> ModelReply:
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=model,
                messages=cast("Any", messages),
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": schema_name, "schema": schema, "strict": False},
                },
                max_completion_tokens=max_output_tokens,
            )
        except openai.APIError as exc:
            raise classify_openai_error(exc, self.name, scrubber=scrub) from None
        http = raw.http_response
        completion = read_completion(http.content, http.headers.get("content-type"), self.name)
        return self._read(completion, scrub)

    def _read(self, reply: _Completion, scrub: Scrubber) -> ModelReply:
        usage = reply.usage
        tokens_in = usage.prompt_tokens if usage else 0
        tokens_out = usage.completion_tokens if usage else 0
        if not reply.choices:
            raise ModelRefused(
                self.name,
                "the reply has no choices (the prompt was filtered?)",
                reason="content_filter",
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        choice = reply.choices[0]
        if choice.finish_reason == "content_filter":
            raise ModelRefused(
                self.name,
                f"the content filter stopped the reply of {reply.model}"
                + _filtered_categories(choice),
                reason="content_filter",
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        refusal = getattr(choice.message, "refusal", None)
        if refusal:
            raise ModelRefused(
                self.name,
                f"{reply.model} refused: {_clip(scrub.scrub(refusal))}",
                reason="refusal",
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        return ModelReply(
            content=choice.message.content,
            model=reply.model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            finish_reason=choice.finish_reason or "",
        )


def _filtered_categories(choice: Any) -> str:
    results = (choice.model_extra or {}).get("content_filter_results") or {}
    hits = [k for k, v in results.items() if isinstance(v, dict) and v.get("filtered")]
    return f" ({', '.join(sorted(hits))})" if hits else ""


def _clip(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds), if present."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue  # an HTTP date: rare for these APIs; let the retry policy decide
        if seconds >= 0:
            return min(seconds, 3600.0)
    return None


def _provider_message(exc: openai.APIError, scrub: Scrubber) -> tuple[str, str | None]:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or exc.message or type(exc).__name__)
    code = error.get("code") if isinstance(error.get("code"), str) else exc.code
    # Scrubbed before it is cut: a cut through a key would leave a piece no rule recognises.
    return _clip(scrub.scrub(message)), code


def classify_openai_error(
    exc: openai.APIError, provider: str, *, scrubber: Scrubber | None = None
) -> ModelUnavailable | ModelRefused:
    """The one mapping from ``openai`` exceptions to AiOs errors (messages scrubbed)."""
    scrub = scrubber or installed()
    if isinstance(exc, openai.APITimeoutError):
        return ModelUnavailable(provider, "the request timed out", reason="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailable(
            provider, f"cannot connect: {_clip(scrub.scrub(str(exc)))}", reason="connect"
        )
    message, code = _provider_message(exc, scrub)
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    if status is None:
        return ModelRefused(provider, message, reason="invalid_request")
    headers = exc.response.headers if isinstance(exc, openai.APIStatusError) else None
    if status == 429:
        return ModelUnavailable(
            provider,
            f"rate limited (429): {message}",
            reason="rate_limited",
            retry_after=retry_after(headers),
        )
    if status >= 500 or status == 408:
        return ModelUnavailable(
            provider,
            f"unavailable ({status}): {message}",
            reason="unavailable",
            retry_after=retry_after(headers),
        )
    if code == "content_filter":
        return ModelRefused(
            provider, f"the content filter rejected the prompt: {message}", reason="content_filter"
        )
    if status in (401, 403):
        return ModelRefused(
            provider, f"not authorised ({status}): {message}; check the key", reason="auth"
        )
    return ModelRefused(
        provider, f"invalid request ({status}): {message}", reason="invalid_request"
    )

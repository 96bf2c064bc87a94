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
==========================================  =================================================

Messages name the provider, the status and the provider's own message; they never carry the
key or the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import openai
from openai.types.chat import ChatCompletion

from aios.errors import ModelRefused, ModelUnavailable

__all__ = ["ChatModel", "ModelReply", "OpenAIChat", "classify_openai_error", "retry_after"]

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


class OpenAIChat:
    """Chat Completions over an ``openai.OpenAI`` or ``openai.AzureOpenAI`` client.

    ``model`` is a model name for OpenAI and a deployment name for Azure.
    """

    def __init__(self, client: openai.OpenAI, *, name: ProviderName) -> None:
        self._client = client
        self.name: str = name

    def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, Any],
        max_output_tokens: int,
    ) -> ModelReply:
        try:
            reply = self._client.chat.completions.create(
                model=model,
                messages=cast("Any", messages),
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": schema_name, "schema": schema, "strict": False},
                },
                max_completion_tokens=max_output_tokens,
            )
        except openai.APIError as exc:
            raise classify_openai_error(exc, self.name) from None
        return self._read(reply)

    def _read(self, reply: ChatCompletion) -> ModelReply:
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
                f"{reply.model} refused: {_clip(refusal)}",
                reason="refusal",
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        return ModelReply(
            content=choice.message.content,
            model=reply.model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            finish_reason=choice.finish_reason,
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


def _provider_message(exc: openai.APIError) -> tuple[str, str | None]:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or exc.message or type(exc).__name__)
    code = error.get("code") if isinstance(error.get("code"), str) else exc.code
    return _clip(message), code


def classify_openai_error(exc: openai.APIError, provider: str) -> ModelUnavailable | ModelRefused:
    """The one mapping from ``openai`` exceptions to AiOs errors."""
    if isinstance(exc, openai.APITimeoutError):
        return ModelUnavailable(provider, "the request timed out", reason="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailable(provider, f"cannot connect: {_clip(str(exc))}", reason="connect")
    message, code = _provider_message(exc)
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

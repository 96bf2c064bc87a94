"""The one place that connects to Temporal: address, namespace, TLS and the pydantic converter."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.runtime import Runtime

from aios.config import Settings
from aios.converter import DATA_CONVERTER
from aios.errors import StackError

__all__ = ["connect"]


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client for ``settings`` (``runtime``: the SDK's default unless a worker gives its
    own); ``StackError`` when Temporal cannot be reached."""
    tls: TLSConfig | bool = settings.temporal_tls
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=DATA_CONVERTER,
            tls=tls,
            api_key=api_key,
            runtime=runtime,
        )
    except RuntimeError as exc:
        raise StackError(
            f"cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): start it with `aios dev up` "
            "or set AIOS_TEMPORAL_ADDRESS"
        ) from exc

"""The Cloud Monitoring client: the library's MetricServiceAsyncClient, over TLS with Google
credentials, or over a plaintext loopback channel to a fake or a private proxy (``insecure``)."""

from __future__ import annotations

from typing import Any

import grpc
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth import credentials as auth_credentials
from google.cloud.monitoring_v3.services.metric_service import MetricServiceAsyncClient
from google.cloud.monitoring_v3.services.metric_service.transports.grpc_asyncio import (
    MetricServiceGrpcAsyncIOTransport,
)

from adapters.stackdriver.config import Params

__all__ = ["RETRYABLE_CODES", "make_client"]

SCOPES = ("https://www.googleapis.com/auth/monitoring.write", "https://www.googleapis.com/auth/monitoring.read")

# Statuses that may succeed later: quota, overload, a passing fault. Everything else is final.
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.CANCELLED,
})


def make_client(params: Params) -> tuple[MetricServiceAsyncClient, Any]:
    """A client for ``params`` and the channel to close with it (None when the library owns it)."""
    if params.insecure:
        # Plaintext: no credentials can travel, so the fake or proxy must not need any.
        channel = grpc.aio.insecure_channel(params.endpoint)
        transport = MetricServiceGrpcAsyncIOTransport(
            channel=channel, credentials=auth_credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]
        )
        return MetricServiceAsyncClient(transport=transport), channel
    credentials: Any = None
    if params.service_account_path:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            params.service_account_path, scopes=SCOPES
        )
    # credentials None: the library uses Application Default Credentials.
    options = ClientOptions(api_endpoint=params.endpoint) if params.endpoint else None
    return MetricServiceAsyncClient(credentials=credentials, client_options=options), None


def status_code(exc: api_exceptions.GoogleAPICallError) -> grpc.StatusCode | None:
    code = exc.grpc_status_code
    return code if isinstance(code, grpc.StatusCode) else None

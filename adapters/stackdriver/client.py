"""The Cloud Monitoring client: the library's MetricServiceAsyncClient, over TLS with Google
credentials, or over a plaintext loopback channel to a fake or a private proxy (``insecure``)."""

from __future__ import annotations

from typing import Any

import grpc
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.cloud.monitoring_v3.services.metric_service import MetricServiceAsyncClient
from google.cloud.monitoring_v3.services.metric_service.transports.grpc_asyncio import (
    MetricServiceGrpcAsyncIOTransport,
)

from adapters.stackdriver.config import Params

__all__ = ["RETRYABLE_CODES", "CredentialsError", "make_client"]


class CredentialsError(RuntimeError):
    """The handler cannot authenticate: no application default credentials, or a bad key file."""

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


def make_client(params: Params) -> MetricServiceAsyncClient:
    """A client for ``params``; ``await client.transport.close()`` closes its channel."""
    if params.insecure:
        # Plaintext: no credentials can travel, so the fake or proxy must not need any.
        channel = grpc.aio.insecure_channel(params.endpoint)
        transport = MetricServiceGrpcAsyncIOTransport(
            channel=channel, credentials=auth_credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]
        )
        return MetricServiceAsyncClient(transport=transport)
    credentials: Any = None
    try:
        if params.service_account_path:
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                params.service_account_path, scopes=SCOPES
            )
        # credentials None: the library looks for Application Default Credentials.
        options = ClientOptions(api_endpoint=params.endpoint) if params.endpoint else None
        return MetricServiceAsyncClient(credentials=credentials, client_options=options)
    except (auth_exceptions.GoogleAuthError, ValueError, OSError) as exc:
        source = params.service_account_path or "application default credentials"
        raise CredentialsError(f"stackdriver: no usable Google credentials ({source}): {exc}") from exc


def status_code(exc: api_exceptions.GoogleAPICallError) -> grpc.StatusCode | None:
    code = exc.grpc_status_code
    return code if isinstance(code, grpc.StatusCode) else None

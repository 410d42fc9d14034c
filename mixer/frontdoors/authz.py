"""``envoy.service.auth.v3.Authorization/Check`` (ext_authz) -> ``runtime.check``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import status_pb2

from mixer import sdk
from mixer.envoy_attributes import MappingOptions, check_request_bag
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, RuntimeLike, log
from mixer.frontdoors.intake import decode_proto, map_one

FRONT_DOOR = "ext_authz"
SERVICE = "envoy.service.auth.v3.Authorization"

_HTTP_BY_CODE = {
    sdk.PERMISSION_DENIED: 403,
    sdk.UNAUTHENTICATED: 401,
    sdk.RESOURCE_EXHAUSTED: 429,
}

# An allow without headers is the same bytes every time.
_OK_BYTES: bytes = external_auth_pb2.CheckResponse(
    status=status_pb2.Status(code=sdk.OK), ok_response=external_auth_pb2.OkHttpResponse()
).SerializeToString()


def http_status_for(result: sdk.CheckResult) -> int:
    """The HTTP status a denial answers with: the handler's choice, else mapped from its rpc code."""
    if result.http_status:
        return result.http_status
    return _HTTP_BY_CODE.get(result.status_code, 403)


def _header_options(headers: Mapping[str, str]) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=value),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for key, value in headers.items()
    ]


def encode_result(result: sdk.CheckResult) -> bytes:
    """A CheckResult as a serialized ext_authz CheckResponse."""
    if result.ok:
        if not result.headers:
            return _OK_BYTES
        response = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=sdk.OK))
        response.ok_response.headers.extend(_header_options(result.headers))
        data: bytes = response.SerializeToString()
        return data
    response = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=result.status_code, message=result.message)
    )
    denied = response.denied_response
    denied.status.code = http_status_for(result)
    denied.body = result.body or (result.message + "\n" if result.message else "")
    denied.headers.extend(_header_options(result.headers))
    denied_bytes: bytes = response.SerializeToString()
    return denied_bytes


class AuthorizationFrontDoor(FrontDoor):
    """Serves ext_authz Check. Quotas: ``--authz-quota`` names plus the ``mixer.quotas`` extension."""

    name = FRONT_DOOR
    check_methods = frozenset({"Check"})

    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime
        self._options = options
        self._mapping = MappingOptions(trust_peer_headers=options.trust_peer_headers)

    def grpc_services(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        # Raw bytes in: a bad protobuf must become INVALID_ARGUMENT, not gRPC's generic INTERNAL.
        return {SERVICE: {"Check": grpc.unary_unary_rpc_method_handler(self.check)}}

    async def check(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        runtime = self._runtime
        request = decode_proto(external_auth_pb2.CheckRequest, raw)
        manifest = runtime.manifest
        bag, extra_quotas = map_one(lambda r: check_request_bag(r, manifest, self._mapping), request)
        names = [*self._options.authz_quotas, *extra_quotas]
        answer = await runtime.check(bag, {name: sdk.QuotaArgs(amount=1) for name in names}, FRONT_DOOR)
        result = answer.verdict()
        if not result.ok:
            log.debug("ext_authz denied: %s", result.message)
        return encode_result(result)

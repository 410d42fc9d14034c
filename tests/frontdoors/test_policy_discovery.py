"""The served-policy door (ECDS) in process: a real grpc.aio server, a raw bidirectional stream as
Envoy opens it, config swaps pushed to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import extension_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_ext_authz_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format, struct_pb2

from mixer.config import compile_config
from mixer.frontdoors import FrontDoorOptions, GrpcListener
from mixer.frontdoors.policy import TYPE_URL, PolicyDiscoveryFrontDoor, rbac_config
from mixer.processes import free_port
from mixer.runtime import Denial, Runtime
from proxy import Inbound, SidecarSpec, render_bootstrap

METHOD = "/envoy.service.extension.v3.ExtensionConfigDiscoveryService/StreamExtensionConfigs"
MESH = Path(__file__).parent / "testdata" / "mesh.yaml"
TELEMETRY = MESH.read_text().replace("CAPTURE_PATH", "").split("\n---\napiVersion: config.istio.io/v1alpha2\n"
                                                                  "kind: handler\nmetadata: {name: deny")[0]
CLOSED = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: closed, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: closed, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: closed, namespace: istio-system}
spec:
  match: destination.workload.name == "c-v1"
  actions: [{handler: closed, instances: [closed]}]
"""


def node(workload: str) -> Any:
    """The node a ``policy_discovery`` sidecar bootstrap declares (an HTTP and a TCP inbound listener)."""
    spec = SidecarSpec(workload=workload, inbound=(Inbound(15006, 8080),), tcp_inbound=(Inbound(15007, 5432),),
                       policy_discovery=True, fail_open=True)
    declared = render_bootstrap(spec)["node"]
    message = discovery_pb2.DiscoveryRequest().node
    message.id, message.cluster = declared["id"], declared["cluster"]
    json_format.ParseDict(declared["metadata"], message.metadata)
    return message


class Stream:
    def __init__(self, call: Any) -> None:
        self.call = call
        self._reading: asyncio.Task[Any] | None = None  # a read outlives a wait that timed out

    async def quiet(self, seconds: float) -> bool:
        """True when nothing is served within ``seconds`` (the read stays pending for later)."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self.call.read())
        done, _ = await asyncio.wait({self._reading}, timeout=seconds)
        return not done

    async def ask(self, names: list[str], node_of: str | None = None, **fields: Any) -> None:
        request = discovery_pb2.DiscoveryRequest(resource_names=names, type_url=TYPE_URL, **fields)
        if node_of:
            request.node.CopyFrom(node(node_of))
        await self.call.write(request.SerializeToString())

    async def served(self, timeout: float = 5.0) -> tuple[discovery_pb2.DiscoveryResponse, dict[str, Any]]:
        reading, self._reading = self._reading or asyncio.ensure_future(self.call.read()), None
        raw = await asyncio.wait_for(reading, timeout)
        assert raw is not grpc.aio.EOF
        reply = discovery_pb2.DiscoveryResponse.FromString(raw)
        configs: dict[str, Any] = {}
        for packed in reply.resources:
            typed = extension_pb2.TypedExtensionConfig()
            assert packed.Unpack(typed)
            target = {"mixer.authz": ext_authz_pb2.ExtAuthz, "mixer.tcp_authz": network_ext_authz_pb2.ExtAuthz,
                      "mixer.rbac": rbac_pb2.RBAC}[typed.name]()
            assert typed.typed_config.Unpack(target)
            configs[typed.name] = target
        return reply, configs


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Runtime, grpc.aio.Channel]]:
    config = tmp_path / "telemetry.yaml"
    config.write_text(TELEMETRY)
    runtime = await Runtime.load([str(config)])
    options = FrontDoorOptions(port=free_port())
    door = PolicyDiscoveryFrontDoor(runtime, options)
    await door.start()
    listener = GrpcListener(runtime, [door], options)
    await listener.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}")
    try:
        yield runtime, channel
    finally:
        await channel.close()
        await listener.stop()
        await door.stop()
        await runtime.close()


def open_stream(channel: grpc.aio.Channel) -> Stream:
    return Stream(channel.stream_stream(METHOD)())


async def swap(runtime: Runtime, text: str) -> None:
    await runtime.apply(compile_config([("c.yaml", text)], runtime.registry))


async def test_serves_the_sidecars_own_ext_authz_switched_off_and_no_rbac_rules(served: Any) -> None:
    runtime, channel = served
    stream = open_stream(channel)
    await stream.ask(["mixer.rbac", "mixer.authz"], node_of="c-v1")
    reply, configs = await stream.served()
    assert reply.type_url == TYPE_URL and reply.nonce
    authz = configs["mixer.authz"]
    assert authz.filter_enabled.default_value.numerator == 0
    assert authz.failure_mode_allow is True  # the sidecar's own setting, served back
    assert authz.grpc_service.envoy_grpc.cluster_name == "mixer"
    assert not configs["mixer.rbac"].HasField("rules")


async def test_a_swap_pushes_rbac_to_the_denied_workload_and_nothing_else_changes_for_others(served: Any) -> None:
    runtime, channel = served
    to_c, to_b = open_stream(channel), open_stream(channel)
    await to_c.ask(["mixer.rbac", "mixer.authz"], node_of="c-v1")
    await to_b.ask(["mixer.rbac", "mixer.authz"], node_of="b-v1")
    first_c, _ = await to_c.served()
    await to_b.served()
    await to_c.ask(["mixer.rbac", "mixer.authz"], version_info=first_c.version_info, response_nonce=first_c.nonce)
    await swap(runtime, TELEMETRY + CLOSED)
    reply, configs = await to_c.served()
    assert reply.version_info != first_c.version_info
    rules = configs["mixer.rbac"].rules
    assert rules.action == rbac_pb2.RBAC().rules.DENY
    assert list(rules.policies) == ["closed.rule.istio-system"]
    assert configs["mixer.authz"].filter_enabled.default_value.numerator == 0  # every request is refused anyway
    _, configs_b = await to_b.served()  # pushed too, still open
    assert not configs_b["mixer.rbac"].HasField("rules")
    # a request-dependent rule on c switches its ext_authz back on (its default: no filter_enabled)
    dependent = CLOSED.replace('destination.workload.name == "c-v1"',
                               '(source.workload.name | "") == "a-v1" && destination.workload.name == "c-v1"')
    await swap(runtime, TELEMETRY + dependent)
    _, configs = await to_c.served()
    assert not configs["mixer.authz"].HasField("filter_enabled")
    assert not configs["mixer.rbac"].HasField("rules")


async def test_the_tcp_check_is_served_off_unless_a_rule_can_fire_for_a_connection(served: Any) -> None:
    runtime, channel = served
    stream = open_stream(channel)
    await stream.ask(["mixer.tcp_authz"], node_of="c-v1")
    _, configs = await stream.served()
    tcp = configs["mixer.tcp_authz"]
    assert tcp.HasField("filter_enabled_metadata")  # a matcher nothing sets: off
    assert tcp.failure_mode_allow is True and tcp.grpc_service.envoy_grpc.cluster_name == "mixer"
    # a rule only an HTTP request can match: still off for TCP, while HTTP checks come on
    on_path = CLOSED.replace('destination.workload.name == "c-v1"', '(request.path | "").startsWith("/admin")')
    await swap(runtime, TELEMETRY + on_path)
    _, configs = await stream.served()
    assert configs["mixer.tcp_authz"].HasField("filter_enabled_metadata")
    await stream.ask(["mixer.tcp_authz", "mixer.authz"])
    _, configs = await stream.served()
    assert not configs["mixer.authz"].HasField("filter_enabled")
    # a rule that denies every connection to c-v1: on (no RBAC filter on TCP: the mixer answers)
    await swap(runtime, TELEMETRY + CLOSED)
    _, configs = await stream.served()
    assert not configs["mixer.tcp_authz"].HasField("filter_enabled_metadata")
    assert configs["mixer.tcp_authz"] == network_ext_authz_pb2.ExtAuthz(
        stat_prefix="tcp_ext_authz", grpc_service=tcp.grpc_service, failure_mode_allow=True,
        include_peer_certificate=True, transport_api_version=tcp.transport_api_version,
        bootstrap_metadata_labels_key="labels")  # the sidecar's own config, served back as stated


async def test_an_ack_or_a_nack_is_not_answered_again(served: Any) -> None:
    runtime, channel = served
    stream = open_stream(channel)
    await stream.ask(["mixer.rbac", "mixer.authz"], node_of="c-v1")
    reply, _ = await stream.served()
    await stream.ask(["mixer.rbac", "mixer.authz"], version_info=reply.version_info, response_nonce=reply.nonce)
    await stream.ask(["mixer.rbac", "mixer.authz"], response_nonce=reply.nonce,
                     error_detail={"code": 3, "message": "rejected"})
    assert await stream.quiet(0.5)
    await stream.ask(["mixer.rbac"])  # asking for another set of names is answered
    _, configs = await stream.served()
    assert list(configs) == ["mixer.rbac"]


async def test_a_sidecar_without_stated_config_gets_rbac_only(served: Any) -> None:
    runtime, channel = served
    stream = open_stream(channel)
    request = discovery_pb2.DiscoveryRequest(resource_names=["mixer.authz", "mixer.rbac", "other"], type_url=TYPE_URL)
    request.node.id = "bare"
    request.node.metadata.CopyFrom(struct_pb2.Struct())
    await stream.call.write(request.SerializeToString())
    _, configs = await stream.served()
    assert list(configs) == ["mixer.rbac"]  # Envoy keeps its default ext_authz (checking)


async def test_malformed_request_ends_the_stream_with_invalid_argument(served: Any) -> None:
    runtime, channel = served
    call = channel.stream_stream(METHOD)()
    await call.write(b"\xff\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_rbac_policy_tests_the_callers_headers() -> None:
    one = rbac_pb2.RBAC()
    assert rbac_config((Denial("r1", (("x-mixer-workload", "a-v1"),)),)).Unpack(one)
    principal = one.rules.policies["r1"].principals[0]
    assert (principal.header.name, principal.header.string_match.exact) == ("x-mixer-workload", "a-v1")
    assert one.rules.policies["r1"].permissions[0].any
    both = rbac_pb2.RBAC()
    assert rbac_config((Denial("r2", (("h1", "x"), ("h2", "y"))), Denial("r3"))).Unpack(both)
    ids = both.rules.policies["r2"].principals[0].and_ids.ids
    assert [(i.header.name, i.header.string_match.exact) for i in ids] == [("h1", "x"), ("h2", "y")]
    assert both.rules.policies["r3"].principals[0].any

"""Served policy: the inbound ext_authz and RBAC filters' config over Envoy's extension config
discovery (ECDS, ``envoy.service.extension.v3.ExtensionConfigDiscoveryService``).

A sidecar written with ``mixer sidecar --policy-discovery`` asks for two filter configs by name:

- ``mixer.authz``: its own ext_authz config (stated in its node metadata), served back unchanged
  where some check or quota rule can fire for it, and switched off (``filter_enabled`` 0%) where
  none can: then no request of that listener waits for a round trip to the mixer;
- ``mixer.rbac``: Envoy's RBAC filter, denying every request when a rule denies this workload
  whatever the request, or every request whose caller header names the workload a rule denies
  (with ``--trust-peer-headers``); the denial is still reported through the access log (403,
  ``rbac_access_denied...`` details);
- ``mixer.tcp_authz``: the network ext_authz filter of its inbound TCP listeners (stated in its node
  metadata too), served back where a check or quota rule can fire for a TCP connection to it, and
  switched off where none can: then no connection waits for a Check.

Which rules can fire is decided per workload from the attributes fixed for its Checks
(``mixer.runtime.listener_policy``). Every config swap pushes the new answers to every stream; until
the first answer (or without the mixer) the sidecar runs its defaults: ext_authz on, no RBAC rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import extension_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_ext_authz_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, json_format

from mixer.attributes import AttributeManifest, Bag, BagError
from mixer.envoy_attributes import (
    HEADER_ONLY_ATTRIBUTES,
    TCP_CHECK_VARYING,
    inbound_check_facts,
    inbound_tcp_check_facts,
)
from mixer.envoy_attributes.names import AUTHZ_FILTER, META_LABELS, META_POLICY, RBAC_FILTER, TCP_AUTHZ_FILTER
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, log
from mixer.frontdoors.intake import decode_proto
from mixer.runtime import Denial, ListenerPolicy, Snapshot, listener_policy

FRONT_DOOR = "policy_discovery"
SERVICE = "envoy.service.extension.v3.ExtensionConfigDiscoveryService"
TYPE_URL = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
_EXT_AUTHZ_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"


class PolicySource(Protocol):
    """What the door needs from the runtime: the current snapshot and word of each swap."""

    @property
    def snapshot(self) -> Snapshot: ...

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]: ...


class _Sidecar:
    """One sidecar's view of the served policy: what it stated about itself in its node metadata."""

    def __init__(self, node: Any, manifest: AttributeManifest) -> None:
        metadata = json_format.MessageToDict(node.metadata)
        labels = metadata.get(META_LABELS) or {}
        stated = metadata.get(META_POLICY) or {}
        self.name = node.id or "(unnamed node)"
        self.authz: dict[str, Any] | None = stated.get("authz")
        self.tcp_authz: dict[str, Any] | None = stated.get("tcp_authz")
        extensions = stated.get("check_extensions") or {}
        string_labels = {k: str(v) for k, v in labels.items() if isinstance(v, str)}
        self.facts: Bag | None
        self.tcp_facts: Bag | None
        try:
            self.facts = inbound_check_facts(string_labels, {k: str(v) for k, v in extensions.items()}, manifest)
            self.tcp_facts = inbound_tcp_check_facts(string_labels, manifest)
        except BagError as exc:  # a bad literal in its bootstrap: its Checks fail too; keep checking
            log.warning("%s: its fixed attributes do not fit the manifest (%s); ext_authz stays on", self.name, exc)
            self.facts = self.tcp_facts = None


def authz_config(stated: Mapping[str, Any], on: bool) -> any_pb2.Any:
    """The sidecar's own ext_authz config, or the same switched off."""
    config = json_format.ParseDict({k: v for k, v in stated.items() if k != "@type"}, ext_authz_pb2.ExtAuthz())
    if not on:
        config.filter_enabled.default_value.numerator = 0
        config.filter_enabled.runtime_key = "mixer.authz.served_off"  # an operator may override it
    packed = any_pb2.Any()
    packed.Pack(config)
    return packed


# A connection metadata key nothing sets: the network ext_authz filter has no enabled fraction, only
# ``filter_enabled_metadata``, and a matcher that never holds switches it off (counted as ``disabled``).
_NEVER_SET = ("mixer", "tcp_authz_served_off")


def tcp_authz_config(stated: Mapping[str, Any], on: bool) -> any_pb2.Any:
    """The sidecar's own network ext_authz config, or the same switched off."""
    config = json_format.ParseDict({k: v for k, v in stated.items() if k != "@type"},
                                   network_ext_authz_pb2.ExtAuthz())
    if not on:
        matcher = config.filter_enabled_metadata
        matcher.filter = _NEVER_SET[0]
        matcher.path.add().key = _NEVER_SET[1]
        matcher.value.present_match = True
    packed = any_pb2.Any()
    packed.Pack(config)
    return packed


def rbac_config(deny: tuple[Denial, ...]) -> any_pb2.Any:
    """No rules (enforce nothing), or one DENY policy per rule: any request, from a downstream whose
    headers pass the rule's exact tests (all of them), or from anyone when it has none."""
    config = rbac_pb2.RBAC()
    if deny:
        config.rules.action = config.rules.DENY
        for denial in deny:
            policy = config.rules.policies[denial.rule]
            policy.permissions.add().any = True
            principal = policy.principals.add()
            if not denial.headers:
                principal.any = True
            for header, value in denial.headers:
                test = principal.and_ids.ids.add().header if len(denial.headers) > 1 else principal.header
                test.name = header
                test.string_match.exact = value
    packed = any_pb2.Any()
    packed.Pack(config)
    return packed


class PolicyDiscoveryFrontDoor(FrontDoor):
    """Serves ECDS streams; pushes on every config swap."""

    name = FRONT_DOOR
    # Served policy is what checks look like to the sidecar: its streams and its swap subscription
    # live on the check loop with them.
    check_methods = frozenset({"StreamExtensionConfigs"})
    on_check_loop = True

    def __init__(self, runtime: PolicySource, options: FrontDoorOptions) -> None:
        self._runtime = runtime
        self._version = 0
        self._wakeups: set[asyncio.Event] = set()
        self._policies: dict[tuple[Any, ...], ListenerPolicy] = {}  # per distinct facts, this snapshot
        self._unsubscribe: Callable[[], None] | None = None
        # Headers only the caller's sidecar sets name the caller only when the mapping believes them.
        self._header_only = HEADER_ONLY_ATTRIBUTES if options.trust_peer_headers else {}

    def grpc_services(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {SERVICE: {"StreamExtensionConfigs": grpc.stream_stream_rpc_method_handler(self.stream)}}

    async def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self._runtime.subscribe(self._swapped)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _swapped(self, snapshot: Snapshot) -> None:
        self._version += 1
        self._policies.clear()
        for wake in self._wakeups:
            wake.set()

    def policy_for(self, facts: Bag | None, tcp: bool = False) -> ListenerPolicy:
        """The policy of a listener whose Checks carry ``facts``: an HTTP listener's (any other
        attribute may vary), or (``tcp``) a TCP listener's, whose Checks carry no request attributes."""
        if facts is None:
            return ListenerPolicy(check=True)
        key = (tcp, *sorted((k, repr(v)) for k, v in facts.items()))
        policy = self._policies.get(key)
        if policy is None:
            config = self._runtime.snapshot.config
            policy = self._policies[key] = (listener_policy(config, facts, {}, TCP_CHECK_VARYING) if tcp
                                            else listener_policy(config, facts, self._header_only))
        return policy

    def response(self, sidecar: _Sidecar, names: frozenset[str], nonce: int) -> discovery_pb2.DiscoveryResponse:
        policy = self.policy_for(sidecar.facts)
        reply = discovery_pb2.DiscoveryResponse(version_info=str(self._version), type_url=TYPE_URL,
                                                nonce=str(nonce))
        for name in sorted(names):
            if name == AUTHZ_FILTER and sidecar.authz is not None:
                typed = authz_config(sidecar.authz, policy.check)
            elif name == RBAC_FILTER:
                typed = rbac_config(policy.deny)
            elif name == TCP_AUTHZ_FILTER and sidecar.tcp_authz is not None:
                # No RBAC filter on TCP listeners: a rule that denies every connection is the mixer's
                # to answer, so a denial switches the check on rather than off.
                tcp = self.policy_for(sidecar.tcp_facts, tcp=True)
                typed = tcp_authz_config(sidecar.tcp_authz, tcp.check or bool(tcp.deny))
            else:
                continue  # not ours (or no stated ext_authz config): Envoy keeps its default
            reply.resources.add().Pack(extension_pb2.TypedExtensionConfig(name=name, typed_config=typed))
        return reply

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> None:
        wake = asyncio.Event()
        state: dict[str, Any] = {"sidecar": None, "names": frozenset(), "done": False}

        async def read() -> None:
            try:
                async for raw in requests:
                    request = decode_proto(discovery_pb2.DiscoveryRequest, raw)
                    if state["sidecar"] is None and request.HasField("node"):
                        state["sidecar"] = _Sidecar(request.node, self._runtime.snapshot.config.manifest)
                    if request.HasField("error_detail"):
                        log.warning("%s rejected served policy version %s: %s", state["sidecar"] and
                                    state["sidecar"].name, request.version_info, request.error_detail.message)
                    names = frozenset(request.resource_names)
                    if names != state["names"]:
                        state["names"] = names
                        wake.set()
            finally:
                state["done"] = True
                wake.set()

        self._wakeups.add(wake)
        reader = asyncio.get_running_loop().create_task(read())
        sent: tuple[int, frozenset[str]] | None = None
        nonce = 0
        try:
            while True:
                await wake.wait()
                wake.clear()
                if state["done"]:
                    break
                current = (self._version, state["names"])
                if state["sidecar"] is None or current == sent:
                    continue
                nonce += 1
                await context.write(self.response(state["sidecar"], state["names"], nonce).SerializeToString())
                sent = current
        finally:
            self._wakeups.discard(wake)
            error = reader.exception() if reader.done() and not reader.cancelled() else None
            reader.cancel()
        if error is not None:
            raise error  # a malformed request: INVALID_ARGUMENT through the listener's guard

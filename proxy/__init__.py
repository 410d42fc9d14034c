"""Envoy sidecars for the mixer: render a bootstrap from a spec, run and supervise Envoy.

Python API (what ``mixer sidecar`` does)::

    from proxy import Inbound, Outbound, SidecarSpec, EnvoyProcess, write_bootstrap

    spec = SidecarSpec(
        workload="reviews-v1", namespace="default",
        inbound=(Inbound(port=15006, app_port=9080),),               # callers -> this app
        outbound=(Outbound("ratings", port=15001, host="127.0.0.1", target_port=15007),),
        mixer_port=9091, fail_open=False,
    )
    path = write_bootstrap(spec, "/tmp/reviews.yaml")   # or render_bootstrap(spec) -> dict
    envoy = EnvoyProcess(path, log_path="/tmp/reviews.log")  # base_id=None: Envoy picks a free one
    envoy.start(); envoy.wait_ready()                   # start from a long-lived thread (PDEATHSIG)
    ...
    envoy.stop()

``Supervisor(envoy, on_ready=...).run()`` restarts a crashed Envoy with backoff, calls ``on_ready`` each time a
started Envoy is LIVE, and stops on SIGTERM/SIGINT/SIGHUP.
What the bootstrap contains and why is in ``proxy/bootstrap.py`` and ``docs/envoy-attributes.md``.
"""

from __future__ import annotations

from pathlib import Path

from proxy.bootstrap import (
    Inbound,
    Outbound,
    SidecarSpec,
    bootstrap_yaml,
    parse_inbound,
    parse_outbound,
    render_bootstrap,
)
from proxy.envoy import EnvoyProcess, Supervisor, envoy_binary, validate_config


def write_bootstrap(spec: SidecarSpec, path: str | Path) -> Path:
    """Write ``spec``'s bootstrap as YAML to ``path``; returns the path."""
    target = Path(path)
    target.write_text(bootstrap_yaml(spec))
    return target


__all__ = [
    "EnvoyProcess",
    "Inbound",
    "Outbound",
    "SidecarSpec",
    "Supervisor",
    "bootstrap_yaml",
    "envoy_binary",
    "parse_inbound",
    "parse_outbound",
    "render_bootstrap",
    "validate_config",
    "write_bootstrap",
]

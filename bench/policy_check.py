"""Checks/s through the rbac and list adapters (Runtime.check), on one core.

Policy: 24 services in namespace default, each with a ServiceRole (GET/HEAD on its paths, by prefix)
and a binding naming two callers; an IP blacklist of 1,000 CIDR ranges plus 1,000 addresses. Bags:
caller -> service requests from random loopback addresses, half of them from a caller the binding names.
Baseline, measured in the same run: the same runtime answering one checknothing rule with the
``noop`` handler, so the ratio is the price of the two policy adapters and their instances.

    .venv/bin/python bench/policy_check.py [--checks 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import platform
import random
import time
from typing import Any

from mixer.config import compile_config
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime

SERVICES = [f"svc{i}" for i in range(24)]
HEADER = "apiVersion: config.istio.io/v1alpha2\n"
RBAC = "apiVersion: rbac.istio.io/v1alpha1\n"

BASELINE = HEADER + """kind: handler
metadata: {name: noop}
spec: {compiledAdapter: noop}
---
""" + HEADER + """kind: instance
metadata: {name: nothing}
spec: {compiledTemplate: checknothing}
---
""" + HEADER + """kind: rule
metadata: {name: nothing}
spec:
  actions: [{handler: noop, instances: [nothing]}]
"""

POLICY_RULES = HEADER + """kind: handler
metadata: {name: rbac}
spec: {compiledAdapter: rbac}
---
""" + HEADER + """kind: instance
metadata: {name: requestcontext}
spec:
  compiledTemplate: authorization
  params:
    subject: {user: source.principal | ""}
    action:
      namespace: destination.service.namespace | "default"
      service: destination.service.host | ""
      method: request.method | ""
      path: request.path | ""
---
""" + HEADER + """kind: rule
metadata: {name: rbac}
spec:
  actions: [{handler: rbac, instances: [requestcontext]}]
---
""" + HEADER + """kind: handler
metadata: {name: ipblacklist}
spec:
  compiledAdapter: listchecker
  params: {entryType: IP_ADDRESSES, blacklist: true, overrides: OVERRIDES}
---
""" + HEADER + """kind: instance
metadata: {name: sourceip}
spec:
  compiledTemplate: listentry
  params: {value: source.ip | ip("0.0.0.0")}
---
""" + HEADER + """kind: rule
metadata: {name: ipblacklist}
spec:
  actions: [{handler: ipblacklist, instances: [sourceip]}]
"""


def policy_sources(rng: random.Random) -> list[tuple[str, str]]:
    blocked = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/24" for _ in range(1000)]
    blocked += [f"127.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(1000)]
    documents = [POLICY_RULES.replace("OVERRIDES", "[" + ", ".join(blocked) + "]")]
    for index, service in enumerate(SERVICES):
        callers = [SERVICES[(index + 1) % len(SERVICES)], SERVICES[(index + 2) % len(SERVICES)]]
        documents.append(RBAC + f"""kind: ServiceRole
metadata: {{name: {service}-reader, namespace: default}}
spec:
  rules: [{{services: [{service}.default.svc.cluster.local], methods: [GET, HEAD], paths: ["/api/*", /health]}}]
---
""" + RBAC + f"""kind: ServiceRoleBinding
metadata: {{name: bind-{service}-reader, namespace: default}}
spec:
  subjects: [{{user: "cluster.local/ns/default/sa/{callers[0]}"}}, {{user: "cluster.local/ns/default/sa/{callers[1]}"}}]
  roleRef: {{kind: ServiceRole, name: {service}-reader}}
""")
    return [("policy.yaml", "---\n".join(documents))]


def make_bags(count: int, rng: random.Random) -> list[dict[str, Any]]:
    bags = []
    for _ in range(count):
        index = rng.randrange(len(SERVICES))
        destination = SERVICES[index]
        # Half the calls come from a caller the destination's binding names.
        source = SERVICES[(index + rng.choice((1, 2))) % len(SERVICES)] if rng.random() < 0.5 else \
            rng.choice([s for s in SERVICES if s != destination])
        bags.append({
            "source.principal": f"cluster.local/ns/default/sa/{source}",
            "source.ip": ipaddress.ip_address(f"127.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"),
            "destination.service.host": f"{destination}.default.svc.cluster.local",
            "destination.service.namespace": "default",
            "request.method": rng.choice(("GET", "GET", "GET", "POST")),
            "request.path": rng.choice(("/api/items", "/api/items/7", "/health", "/api/x", "/admin")),
        })
    return bags


async def run(runtime: Runtime, bags: list[dict[str, Any]]) -> tuple[float, int]:
    started = time.perf_counter()
    denied = 0
    for bag in bags:
        if not (await runtime.check(bag, front_door="bench")).result.ok:
            denied += 1
    return time.perf_counter() - started, denied


async def measure(sources: list[tuple[str, str]], bags: list[dict[str, Any]], repeat: int) -> tuple[float, int]:
    runtime = Runtime()
    await runtime.apply(compile_config(sources, AdapterRegistry()))
    try:
        runs = [await run(runtime, bags) for _ in range(repeat)]
    finally:
        await runtime.close()
    return min(r[0] for r in runs), runs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(7)
    sources = policy_sources(rng)
    bags = make_bags(args.checks, rng)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, pinned to 1 core")
    print(f"checks: {args.checks}, best of {args.repeat}")
    base, _ = asyncio.run(measure([("baseline.yaml", BASELINE)], bags, args.repeat))
    elapsed, denied = asyncio.run(measure(sources, bags, args.repeat))
    print(f"baseline (checknothing -> noop):            {args.checks / base:10,.0f} checks/s")
    print(f"rbac (24 roles) + IP blacklist (2,000):      {args.checks / elapsed:10,.0f} checks/s "
          f"({denied / args.checks:.0%} denied)")
    print(f"cost ratio policy/baseline: {elapsed / base:.2f}x")


if __name__ == "__main__":
    main()

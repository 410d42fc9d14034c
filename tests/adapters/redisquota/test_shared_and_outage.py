"""Quotas shared across processes through one Redis, and a Redis outage: the handler's failure
policy answers while it is down, and allocation resumes once it is back, without a restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from mixer.config import compile_config
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime
from mixer.sdk import INTERNAL, OK, QuotaArgs
from tests.redisserver import RedisServer

ROOT = Path(__file__).resolve().parents[3]


def test_two_processes_share_one_limit_exactly(redis_server: RedisServer) -> None:
    redis.Redis(port=redis_server.port).flushall()
    # 2 x 250 concurrent allocations against a limit of 300: exactly 300 granted in total.
    children = [
        subprocess.Popen([sys.executable, "-m", "tests.adapters.redisquota.allocate", redis_server.url, "250", "25"],
                         cwd=ROOT, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    granted = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        granted.append(int(out))
    assert sum(granted) == 300
    assert all(g > 0 for g in granted), granted  # both really drew from the same counter


def config(url: str, fail_open: bool) -> str:
    return f"""apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: shared}}
spec:
  compiledAdapter: redisquota
  connection: {{timeout: 500ms}}
  failOpen: {str(fail_open).lower()}
  params:
    redisServerUrl: "{url}"
    connectionPoolSize: 4
    quotas: [{{name: requestcount, maxAmount: 2, validDuration: 1h}}]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: requestcount}}
spec:
  compiledTemplate: quota
  params: {{dimensions: {{source: source.workload.name | "unknown"}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: quota}}
spec:
  actions: [{{handler: shared, instances: [requestcount]}}]
"""


@pytest.mark.parametrize("fail_open", [False, True])
async def test_redis_down_answers_by_policy_and_recovers_without_restart(tmp_path: Path, fail_open: bool) -> None:
    server = RedisServer(tmp_path)
    server.start()
    runtime = Runtime()
    try:
        await runtime.apply(compile_config([("q.yaml", config(server.url, fail_open))], AdapterRegistry()))
        bag = {"source.workload.name": "a"}
        ask = {"requestcount": QuotaArgs(1)}
        assert (await runtime.check(bag, ask)).quotas["requestcount"].granted_amount == 1

        server.stop()
        down = await runtime.check(bag, ask)
        granted = down.quotas["requestcount"]
        if fail_open:
            assert (granted.granted_amount, granted.status_code) == (1, OK)
            assert down.verdict().ok
        else:
            assert (granted.granted_amount, granted.status_code) == (0, INTERNAL)
            assert not down.verdict().ok
        assert "shared.handler.istio-system" in granted.message

        server.start()  # same port, empty (no persistence): the scripts must be loaded again
        back = [(await runtime.check(bag, ask)).quotas["requestcount"] for _ in range(3)]
        assert [(r.granted_amount, r.status_code) for r in back] == [(1, OK), (1, OK), (0, 8)]
    finally:
        await runtime.close()
        server.stop()

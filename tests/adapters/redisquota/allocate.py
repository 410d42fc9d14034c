"""Run in a child process: allocate one unit ``count`` times (``concurrency`` at once) from the
shared quota in the Redis at ``url`` and print how many were granted."""

from __future__ import annotations

import asyncio
import sys

from adapters.redisquota import RedisQuotaAdapter
from mixer.sdk import Instance, QuotaArgs
from tests.adapters.support import env

QUOTAS = [{"name": "shared", "maxAmount": 300, "validDuration": "1h"}]


async def main(url: str, count: int, concurrency: int) -> None:
    adapter = RedisQuotaAdapter()
    handler = adapter.build(adapter.parse_params({"redisServerUrl": url, "quotas": QUOTAS}), env(), {})
    await handler.start()
    instance = Instance("shared.instance.istio-system", "quota", {"dimensions": {"destination": "b"}})
    limiter = asyncio.Semaphore(concurrency)

    async def one() -> int:
        async with limiter:
            return (await handler.allocate_quota(instance, QuotaArgs(1))).granted_amount

    granted = await asyncio.gather(*(one() for _ in range(count)))
    await handler.close()
    print(sum(granted))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))

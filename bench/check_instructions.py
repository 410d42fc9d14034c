"""Instructions per native Check in process, rbac + memquota against the allow-all handler, both with
the check cache off: what bench/check.py's "cache off vs allow-all handler" ratio measures in server
CPU, counted by valgrind's callgrind instead (repeatable to ~0.1% whatever the machine's load, where
the CPU figures of a shared machine move 20-40% run to run). Also a ``Runtime.check`` answered from
the check cache against one answered by rbac (bench/check.py's "cache" part: hit against miss), the
hit read as Envoy's front doors read it (``verdict()``) and as the native API does (``result``, which
on a hit builds the verdict with the duration and uses it has left). Needs ``valgrind``; ~4 minutes.

    .venv/bin/python bench/check_instructions.py [--checks 1000]

A check here is what the native front door does per call besides gRPC: the JSON request parsed into
a bag, ``Runtime.check`` (a ``requestcount`` quota asked), the answer as JSON. Not counted: gRPC,
the hop to the check loop, and the cache effects of a server running other code between checks.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import callgrind  # noqa: E402
import check  # noqa: E402 - the sibling benchmark's configs and request

WARM_UP = 200


def counted_run(checks: int) -> None:
    """Inside valgrind: per config one warm-up ``functools.reduce`` and one counted."""
    import orjson

    from mixer.config import compile_config
    from mixer.frontdoors.native import check_response_json, parse_check
    from mixer.runtime import Runtime

    loop = asyncio.new_event_loop()
    requests = [check.native_request() for _ in range(1000)]  # distinct request ids
    for config in (check.ALLOW_ALL, check.POLICY):
        runtime = Runtime(check_cache_size=0)
        loop.run_until_complete(runtime.apply(compile_config([("config.yaml", config)], runtime.registry)))
        manifest = runtime.manifest

        async def native(count: int, runtime: Runtime = runtime) -> None:
            for index in range(count):
                bag, quotas = parse_check(orjson.loads(requests[index % len(requests)]), manifest)
                response = await runtime.check(bag, quotas, "native_grpc")
                assert response.verdict().ok, response
                orjson.dumps(check_response_json(response))

        _counted(loop, native, checks)
        loop.run_until_complete(runtime.close())
    # Runtime.check alone, no quota asked: a hit read as Envoy's doors read it (``verdict()``: the
    # status only), a hit read as the native API reads it (``result``: the verdict with the duration
    # and uses it has left), then a miss (the cache off) read through ``verdict()``.
    for cache_size, read in ((10_000, _verdict), (10_000, _result), (0, _verdict)):
        runtime = Runtime(check_cache_size=cache_size)
        loop.run_until_complete(runtime.apply(compile_config([("config.yaml", check.POLICY)], runtime.registry)))
        bags = [parse_check(orjson.loads(request), runtime.manifest)[0] for request in requests]

        async def bare(count: int, runtime: Runtime = runtime, bags: list[Any] = bags,
                       read: Callable[[Any], Any] = read) -> None:
            for index in range(count):
                assert read(await runtime.check(bags[index % len(bags)])).ok

        _counted(loop, bare, checks)
        loop.run_until_complete(runtime.close())
    loop.close()


def _verdict(response: Any) -> Any:
    return response.verdict()


def _result(response: Any) -> Any:
    return response.result


def _counted(loop: asyncio.AbstractEventLoop, checks_of: Callable[[int], Coroutine[Any, Any, None]], checks: int) -> None:
    """A warm-up, then ``checks`` checks counted: each inside one ``functools.reduce`` (what callgrind
    counts), all checks in one coroutine, so that the event loop's cost of starting a run is not
    counted per check (a server's loop does not start a run per check)."""
    for count in (WARM_UP, checks):
        functools.reduce(lambda done, _: loop.run_until_complete(checks_of(count)) or done + 1, [None], 0)


def count(checks: int) -> tuple[float, ...]:
    """Instructions per check: allow-all handler, rbac + memquota, cache hit (``verdict()``), cache
    hit (``result``), cache miss."""
    totals = callgrind.counted_reduces([__file__, "--counted-run", "--checks", str(checks)], 1_000_000, 1800)
    if len(totals) != 10:
        raise RuntimeError(f"expected 10 runs (warm-up and counted, five cases), got {totals}")
    return tuple(total / checks for total in totals[1::2])



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1000, help="counted checks per config")
    parser.add_argument("--counted-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.counted_run:
        counted_run(args.checks)
        return 0
    allow, policy, hit, hit_result, miss = count(args.checks)
    print(f"instructions per native Check in process, check cache off ({args.checks} counted checks each):")
    print(f"| allow-all handler (noop) | {allow:,.0f} |")
    print(f"| rbac + memquota | {policy:,.0f} |")
    print(f"| rbac + memquota over allow-all | {policy / allow:.3f}x (+{policy - allow:,.0f}) |")
    print("instructions per Runtime.check (rbac, no quota), from the check cache and without it:")
    print(f"| cache hit, verdict() read (ext_authz, HTTP check) | {hit:,.0f} |")
    print(f"| cache hit, result read (native API: duration and uses left) | {hit_result:,.0f} |")
    print(f"| cache miss, verdict() read | {miss:,.0f} |")
    print(f"| hit cheaper than miss | {miss / hit:.2f}x (result read: {miss / hit_result:.2f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

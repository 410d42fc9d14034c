"""Instructions per native gRPC Check in the whole server process, counted by valgrind's callgrind:
bench/check.py's "native gRPC" comparison (rbac + memquota with the check cache off, against the
mixer with the allow-all handler) with gRPC, the event loop and the front door included, in a count
that the machine's load does not move (bench/check.py's CPU figures move 1.1x-1.4x from run to run on
a shared machine, single rounds 0.6x-1.7x). Also the cache on, and the bare grpc.aio server that
answers a constant allow (no mixer at all). Needs ``valgrind``; about 6 minutes on two CPUs.

    .venv/bin/python bench/check_server_instructions.py [--checks 1500] [--connections 1]

Each server runs under callgrind twice, answering a warm-up and then ``FEW`` or ``FEW + checks``
checks, and is stopped with SIGTERM (callgrind writes its count when the process exits). The
difference of the two runs' totals over ``checks`` is the instructions per check; start-up, config
loading and shutdown are the same in both runs and cancel out. Checks are sent one at a time by
default (``--connections 1``), so that no server answers several calls per wake-up of its gRPC
poller (under valgrind a server is ~50x slower, and a queue of calls would favour the slower one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import callgrind  # noqa: E402
import check  # noqa: E402 - the sibling benchmark's configs, request, servers and load

from mixer.processes import free_port, start, stop, wait_for_port  # noqa: E402

FEW = 100  # checks answered in both runs besides the warm-up (cancel out)
WARM_UP = 100


def server_commands(workdir: Path) -> dict[str, Callable[[int], list[str]]]:
    policy = workdir / "policy.yaml"
    policy.write_text(check.POLICY)
    allow_all = workdir / "allow-all.yaml"
    allow_all.write_text(check.ALLOW_ALL)
    bare = [sys.executable, str(Path(check.__file__).resolve()), "--bare-native"]
    return {
        "bare grpc.aio allow": lambda port: [*bare, str(port)],
        "allow-all handler (noop), cache off": lambda port: check.mixer_command(
            allow_all, port, "--check-cache-size", "0"),
        "rbac + memquota, cache off": lambda port: check.mixer_command(policy, port, "--check-cache-size", "0"),
        "rbac + memquota, cache on": lambda port: check.mixer_command(policy, port),
    }


async def send_checks(port: int, count: int, connections: int) -> None:
    import grpc
    import orjson

    requests = [check.native_request() for _ in range(1000)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/mixer.v1.Mixer/Check")

        async def caller(offset: int) -> None:
            for index in range(offset, count, connections):
                reply = orjson.loads(await call(requests[index % len(requests)]))
                assert reply["status"]["code"] == 0, reply

        await asyncio.gather(*(caller(i) for i in range(connections)))


def counted_server(command: list[str], checks: int, connections: int, workdir: Path, tag: str) -> int:
    """Total instructions of one server process that answered the warm-up and ``checks`` checks."""
    out = workdir / f"{tag}.callgrind"
    port = free_port()
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command(port)]
    proc = start(argv, log_path=str(workdir / f"{tag}.log"), cwd=str(check.ROOT),
                 env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        wait_for_port(port, 600, proc)
        asyncio.run(send_checks(port, WARM_UP + checks, connections))
    finally:
        stop(proc, timeout=300)
    total = callgrind.callgrind_total(out)
    if not total:
        raise RuntimeError(f"{out}: no totals line")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1500, help="checks counted (the difference of the two runs)")
    parser.add_argument("--connections", type=int, default=1, help="checks in flight")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="check-server-callgrind-") as tmp:
        workdir = Path(tmp)
        commands = server_commands(workdir)
        jobs = [(name, count) for name in commands for count in (FEW, FEW + args.checks)]
        with ThreadPoolExecutor(max(1, min(len(os.sched_getaffinity(0)), 4))) as pool:
            totals = dict(zip(jobs, pool.map(
                lambda job: counted_server(commands[job[0]], job[1], args.connections, workdir,
                                           f"{list(commands).index(job[0])}-{job[1]}"), jobs)))
    per_check = {name: (totals[name, FEW + args.checks] - totals[name, FEW]) / args.checks for name in commands}
    print(f"instructions per native gRPC Check, whole server process ({args.checks} checks counted, "
          f"{args.connections} in flight):")
    for name, count in per_check.items():
        print(f"| {name} | {count:,.0f} |")
    allow_all = per_check["allow-all handler (noop), cache off"]
    for name in ("rbac + memquota, cache off", "rbac + memquota, cache on"):
        print(f"| {name} over the allow-all handler | {per_check[name] / allow_all:.3f}x |")
    print(f"| allow-all handler over bare grpc.aio | {allow_all / per_check['bare grpc.aio allow']:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Instructions per span of bench/traces.py's in-process stages, counted by valgrind's callgrind
(repeatable whatever the machine's load, where CPU figures of a shared machine move 20-40% run to
run): decoding export requests, mapping spans to bags, the default tracing rule into a noop
handler, and the otlp adapter's encoding of the instances (a memory handler keeps them, as
``--stages`` does). Each stage is counted cumulatively (decode; decode + bags; ...) and the
differences are printed (the encoding's figure includes the memory handler taking the
instances, a list append per batch). Needs ``valgrind``; about two minutes.

With ``--full``, also the whole path of bench/traces.py (the gRPC listener and OTLP door, the event
loop, the rules, the otlp adapter's push queue and gRPC export to a receiver process) counted in the
whole mixer process: it runs twice under callgrind, for ``--full-spans`` and five times as many
spans, and the difference is divided by the spans between them (start-up and shutdown cancel out).
About four more minutes.

    .venv/bin/python bench/traces_instructions.py [--spans 3000] [--full] [--full-spans 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import callgrind  # noqa: E402 - a sibling bench module

STAGES = ("decode", "bags", "rules", "encode")


def counted_run(spans: int) -> None:
    """Inside valgrind: per stage one warm-up pass and one counted inside ``functools.reduce``."""
    import traces

    from adapters.otlp.convert import span_ids, traces_request, tracespan_to_span
    from mixer.frontdoors.otlp_wire import ExportTraceServiceRequest as WireRequest
    from mixer.frontdoors.span_attributes import otlp_span_bag, resource_base_bag
    from mixer.runtime import Runtime

    # Each counted pass reads spans no pass read before: a span's request id is new, as in a
    # sidecar's export, and must not be found in the door's and the adapter's caches.
    made = traces.envoy_like_requests((1 + len(STAGES)) * spans, 100)
    per_set = len(made) // (1 + len(STAGES))
    warm_up, *counted = (made[i * per_set:(i + 1) * per_set] for i in range(1 + len(STAGES)))
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="traces-callgrind-") as tmp:
        noop = loop.run_until_complete(Runtime.load([traces._stage_config(Path(tmp), "noop")]))
        memory = loop.run_until_complete(Runtime.load([traces._stage_config(Path(tmp), "memory")]))
    manifest = noop.manifest
    capture = memory.snapshot.slots["otlp.handler.istio-system"].handler

    def run(last: str, requests: list[bytes]) -> None:
        for raw in requests:  # request by request, as the door works
            request = WireRequest.FromString(raw)
            if last == "decode":
                continue
            batch = []
            for resource_spans in request.resource_spans:
                base = resource_base_bag(resource_spans.resource, manifest)
                for scope_spans in resource_spans.scope_spans:
                    batch.extend(otlp_span_bag(span, base, manifest) for span in scope_spans.spans)
            if last == "bags":
                continue
            noop.report(batch)
            if last == "rules":
                continue
            memory.report(batch)  # the same instances again, kept for the encoding (subtracted below)
            instances = list(capture.instances)  # type: ignore[attr-defined]
            capture.instances.clear()  # type: ignore[attr-defined]
            traces_request([tracespan_to_span(i.fields, span_ids(i.fields)) for i in instances])

    for stage, fresh in zip(STAGES, counted):
        run(stage, warm_up)
        functools.reduce(lambda done, _: run(stage, fresh) or done + 1, [None], 0)
    loop.run_until_complete(noop.close())
    loop.run_until_complete(memory.close())
    loop.close()


def count(spans: int) -> list[float]:
    """Cumulative instructions per span after each stage."""
    totals = callgrind.counted_reduces([__file__, "--counted-run", "--spans", str(spans)], 1_000_000, 3600)
    if len(totals) != len(STAGES):
        raise RuntimeError(f"expected {len(STAGES)} counted runs, got {totals}")
    return [total / spans for total in totals]



def full_path_run(spans: int) -> None:
    """Inside valgrind: bench/traces.py's full path for ``spans`` spans."""
    import traces

    with tempfile.TemporaryDirectory(prefix="traces-full-") as tmp:
        run = argparse.Namespace(spans=spans, spans_per_request=100, concurrency=8)
        sent, _, _ = asyncio.run(traces.through_the_mixer(run, Path(tmp)))
    if sent != spans:
        raise RuntimeError(f"{sent} of {spans} spans delivered")


def count_full_path(spans: int) -> float:
    """Instructions per span of the whole mixer process, from two runs of different lengths."""
    few, many = (callgrind.process_total([sys.executable, __file__, "--full-run", "--spans", str(n)], 3600)
                 for n in (spans, 5 * spans))
    return (many - few) / (4 * spans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=3000)
    parser.add_argument("--full", action="store_true", help="also count the whole path in the mixer process")
    parser.add_argument("--full-spans", type=int, default=1000)
    parser.add_argument("--counted-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--full-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.counted_run:
        counted_run(args.spans)
        return 0
    if args.full_run:
        full_path_run(args.spans)
        return 0
    decode, bags, rules, full = count(args.spans)
    encode = full - rules - (rules - bags)  # the memory handler's report repeats the rule's work
    print(f"instructions per span ({args.spans} spans): decode {decode:,.0f}, bags {bags - decode:,.0f}, "
          f"rules {rules - bags:,.0f}, otlp encode {encode:,.0f}; sum {full - (rules - bags):,.0f}")
    if args.full:
        whole = count_full_path(args.full_spans)
        print(f"the whole path in the mixer process (gRPC in and out, the loop, the push queue included): "
              f"{whole:,.0f} instructions per span ({args.full_spans} and {5 * args.full_spans} spans)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

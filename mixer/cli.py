"""The ``mixer`` command: serve, validate, expr."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from mixer.attributes import AttributeManifest, BagError, bag_from_json, default_manifest, value_to_json
from mixer.config import DEFAULT_CONFIG_DIR, ConfigError, load_config
from mixer.registry import AdapterRegistry
from mixer.expr import EvaluationError, ExpressionError, compile_expression


def main(argv: Sequence[str] | None = None, registry: AdapterRegistry | None = None) -> int:
    """The command line; ``registry`` lets an embedding program serve adapters of its own."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    args.registry = registry
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixer", description="Mixer-style telemetry and policy collector")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the collector")
    serve.add_argument("--config", action="append", help=f"config file or directory (default {DEFAULT_CONFIG_DIR})")
    serve.add_argument("--host", default="127.0.0.1", help="native HTTP API host (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=15014, help="native HTTP API port (default 15014)")
    serve.add_argument("--metrics-address", default="127.0.0.1:42422", metavar="HOST:PORT",
                       help="where prometheus handlers that set no address serve /metrics (default %(default)s, "
                            "loopback: the metrics name workloads and principals; 0.0.0.0:42422 exposes them)")
    serve.add_argument("--shutdown-grace", type=float, default=10.0, metavar="SECONDS",
                       help="on SIGTERM: time for requests in flight, then for a final scrape of /metrics "
                            "(default %(default)s)")
    serve.add_argument("--watch-interval", type=float, default=2.0, help="seconds between config checks; 0 off")
    serve.add_argument("--log-level", default="INFO")
    _add_grpc_arguments(serve)
    _add_limit_arguments(serve)
    serve.set_defaults(run=_serve)

    from proxy.cli import add_arguments as add_sidecar_arguments, run as run_sidecar

    sidecar = commands.add_parser("sidecar", help="write (and --run) an Envoy sidecar bootstrap")
    add_sidecar_arguments(sidecar)
    sidecar.set_defaults(run=run_sidecar)

    from mixer.demo import add_arguments as add_demo_arguments, run as run_demo

    demo = commands.add_parser("demo", help="run the mixer with a sidecar'd sample app, load and Prometheus")
    add_demo_arguments(demo)
    demo.set_defaults(run=run_demo)

    validate = commands.add_parser("validate", help="check config files; print every error")
    validate.add_argument("paths", nargs="+", help="files or directories")
    validate.add_argument("--strict", action="store_true",
                          help="documents of other API groups (a DestinationRule...) are errors, not skipped")
    _add_vocabulary_argument(validate)
    validate.set_defaults(run=_validate)

    expr = commands.add_parser("expr", help="evaluate an expression against attributes")
    expr.add_argument("expression", help="the expression, or - to read JSON lines from stdin")
    expr.add_argument("--attributes", default="{}", help="a JSON object of attributes")
    _add_vocabulary_argument(expr)
    expr.set_defaults(run=_expr)
    return parser


def _add_vocabulary_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", action="append", default=[], metavar="PATH",
                         help="config file or directory whose attributemanifest documents extend the "
                              "default vocabulary (repeatable)")


def _add_grpc_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--grpc-host", default="127.0.0.1", help="gRPC front doors host (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, default=9091, help="gRPC front doors port (default 9091)")
    serve.add_argument("--no-grpc", dest="grpc", action="store_false", help="no gRPC front doors")
    serve.add_argument("--trust-peer-headers", action="store_true",
                       help="believe x-mixer-workload/-namespace request headers about the caller (spoofable)")
    serve.add_argument("--authz-quota", action="append", default=[], metavar="INSTANCE",
                       help="quota instance every ext_authz Check allocates (amount 1)")
    serve.add_argument("--check-http-port", type=int, default=0, metavar="PORT",
                       help="also answer Envoy's ext_authz over plain HTTP (http_service) on --grpc-host:PORT, "
                            "the cheaper round trip (default 0: off)")
    serve.add_argument("--workers", type=int, default=1, help="serving processes sharing the ports (SO_REUSEPORT)")
    serve.add_argument("--check-cache-size", type=int, default=10_000, metavar="N",
                       help="check verdicts kept for reuse within their valid duration and use count (default "
                            "10000; 0: no check cache)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--metrics-dir", help=argparse.SUPPRESS)  # set by --workers: see mixer.sharedmetrics
    _add_kafka_arguments(serve)


def _add_kafka_arguments(serve: argparse.ArgumentParser) -> None:
    from mixer.kafka import KafkaOptions, Mode

    defaults = KafkaOptions()
    serve.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.LOCAL.value,
                       help="local: dispatch reports here (default); frontdoor: publish accepted reports to "
                            "Kafka and answer checks here; worker: consume reports from Kafka and dispatch them")
    serve.add_argument("--kafka-bootstrap", default=defaults.bootstrap,
                       help=f"Kafka bootstrap servers, host:port[,host:port] (default {defaults.bootstrap})")
    serve.add_argument("--kafka-topic", default=defaults.topic, help=f"report topic (default {defaults.topic})")
    serve.add_argument("--kafka-dead-letter-topic", default=defaults.dead_letter_topic,
                       help=f"where workers put messages they cannot decode (default {defaults.dead_letter_topic})")
    serve.add_argument("--kafka-group", default=defaults.group,
                       help=f"the workers' consumer group (default {defaults.group})")
    serve.add_argument("--kafka-session-timeout", type=float, default=defaults.session_timeout,
                       help=f"seconds before a silent worker's partitions move (default {defaults.session_timeout:g})")


def _add_limit_arguments(serve: argparse.ArgumentParser) -> None:
    from mixer.frontdoors import Limits

    defaults = Limits()
    group = serve.add_argument_group("limits", "what callers can make the collector hold at once (README: Limits)")
    for name, help_text in [
        ("max_bags_per_request", "bags in one report (HTTP, native gRPC, one access log message); more: 400"),
        ("max_body_bytes", "bytes of one HTTP body or gRPC message; more: 413 / RESOURCE_EXHAUSTED"),
        ("max_inflight_bytes", "bytes of bodies and messages handled at once, per listener; more: 429"),
        ("max_inflight_requests", "HTTP requests handled at once; more: 429"),
        ("max_connections", "open HTTP connections, per HTTP listener and the HTTP ext_authz door; more: 429, closed"),
        ("max_streams", "access log streams open at once; more: RESOURCE_EXHAUSTED"),
        ("concurrent_reports", "reports decoded and dispatched at once; the others wait, admitted"),
    ]:
        group.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name),
                           metavar="N", help=f"{help_text} (default %(default)s)")
    group.add_argument("--stream-idle-timeout", dest="stream_idle_seconds", type=float,
                       default=defaults.stream_idle_seconds, metavar="SECONDS",
                       help="end an access log stream silent this long (Envoy reopens it; default %(default)s)")
    group.add_argument("--grpc-keepalive", dest="keepalive_seconds", type=float, default=defaults.keepalive_seconds,
                       metavar="SECONDS", help="ping idle gRPC connections this often (default %(default)s)")


def _limits(args: argparse.Namespace) -> Any:
    from mixer.frontdoors import Limits

    limits = Limits(**{name: getattr(args, name) for name in Limits.__dataclass_fields__})
    problems = limits.problems()
    if problems:
        raise SystemExit(f"mixer serve: {'; '.join(problems)}")
    return limits


def _serve(args: argparse.Namespace) -> int:
    from mixer.server import ServeOptions, serve

    if args.check_cache_size < 0:
        print("mixer: --check-cache-size must not be negative", file=sys.stderr)
        return 2
    if args.workers > 1:
        from mixer.frontdoors.workers import run_workers

        return run_workers(args.argv, args.workers, args.shutdown_grace)
    from mixer.frontdoors import FrontDoorOptions
    from mixer.kafka import KafkaOptions, Mode

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = _limits(args)
    from adapters.prometheus import split_address

    if split_address(args.metrics_address) is None:
        print(f"mixer serve: --metrics-address must be HOST:PORT, got {args.metrics_address!r}", file=sys.stderr)
        return 2
    doors = FrontDoorOptions(
        host=args.grpc_host,
        port=args.grpc_port,
        trust_peer_headers=args.trust_peer_headers,
        authz_quotas=tuple(args.authz_quota),
        reuse_port=args.reuse_port,
        limits=limits,
        check_http_port=args.check_http_port,
    )
    options = ServeOptions(
        config=args.config or [str(DEFAULT_CONFIG_DIR)],
        host=args.host,
        port=args.port,
        watch_interval=args.watch_interval,
        reuse_port=args.reuse_port,
        doors=doors,
        grpc=args.grpc,
        metrics_address=args.metrics_address,
        shutdown_grace=args.shutdown_grace,
        metrics_dir=args.metrics_dir,
        check_cache_size=args.check_cache_size,
        mode=Mode(args.mode),
        registry=args.registry,
        kafka=KafkaOptions(
            bootstrap=args.kafka_bootstrap,
            topic=args.kafka_topic,
            dead_letter_topic=args.kafka_dead_letter_topic,
            group=args.kafka_group,
            session_timeout=args.kafka_session_timeout,
            heartbeat_interval=min(KafkaOptions().heartbeat_interval, args.kafka_session_timeout / 3),
        ),
    )
    try:
        asyncio.run(serve(options))
    except ConfigError as exc:
        print(f"mixer: invalid config:\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mixer: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    try:
        config = load_config([*args.config, *args.paths], strict=args.strict)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} error(s)", file=sys.stderr)
        return 1
    for note in config.notes:
        print(note)
    rbac = config.rbac
    roles = f", {len(rbac.roles)} ServiceRoles, {len(rbac.bindings)} ServiceRoleBindings" if rbac.roles else ""
    print(f"ok: {len(config.handlers)} handlers, {len(config.instances)} instances, {len(config.rules)} rules{roles}")
    return 0


def evaluate_json(expression: str, attributes: Any, manifest: AttributeManifest | None = None) -> dict[str, Any]:
    """Compile and evaluate; the result line of ``mixer expr``. Raises ValueError with a message."""
    manifest = manifest if manifest is not None else default_manifest()
    compiled = compile_expression(expression, manifest)
    bag = bag_from_json(attributes, manifest)
    value = compiled.evaluate(bag)
    return {"type": compiled.type.value, "value": value_to_json(compiled.type, value)}


def _vocabulary(paths: Sequence[str]) -> AttributeManifest:
    """The default vocabulary plus the attributemanifest documents of the config at ``paths``."""
    return load_config(paths).manifest if paths else default_manifest()


def _expr(args: argparse.Namespace) -> int:
    try:
        manifest = _vocabulary(args.config)
    except ConfigError as exc:
        print(f"mixer expr: invalid --config:\n{exc}", file=sys.stderr)
        return 1
    if args.expression == "-":
        return _expr_lines(sys.stdin, sys.stdout, manifest)
    try:
        attributes = orjson.loads(args.attributes)
        line = evaluate_json(args.expression, attributes, manifest)
    except orjson.JSONDecodeError as exc:
        print(f"mixer expr: --attributes is not valid JSON: {exc}", file=sys.stderr)
        return 1
    except (ExpressionError, EvaluationError, BagError) as exc:
        print(f"mixer expr: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    return 0


def _expr_lines(source: TextIO, sink: TextIO, manifest: AttributeManifest | None = None) -> int:
    """One result line per request line; a failing line answers {"error": ...} and the stream goes on."""
    for raw in source:
        if not raw.strip():
            continue
        try:
            request = orjson.loads(raw)
            if not isinstance(request, dict) or not isinstance(request.get("expression"), str):
                raise ValueError('expected {"expression": "...", "attributes": {...}}')
            line = evaluate_json(request["expression"], request.get("attributes", {}), manifest)
        except (orjson.JSONDecodeError, ValueError, ExpressionError, EvaluationError) as exc:
            line = {"error": str(exc)}
        sink.write(orjson.dumps(line).decode() + "\n")
        sink.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``mixer sidecar``: write a sidecar's Envoy bootstrap and optionally run and supervise Envoy."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path

from proxy.bootstrap import SidecarSpec, bootstrap_yaml, parse_inbound, parse_outbound
from proxy.envoy import STOP_SIGNALS, EnvoyProcess, Supervisor

READY_PREFIX = "envoy ready: admin "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", required=True, help="this workload's name, e.g. reviews-v1")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--service", default="", help="service name (default: workload without -vN)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="workload label (default: app=<service>, version=vN)")
    parser.add_argument("--service-account", default="")
    parser.add_argument("--inbound", action="append", default=[], metavar="PORT:APP_PORT",
                        help="listen on PORT for callers, forward to the app on 127.0.0.1:APP_PORT")
    parser.add_argument("--outbound", action="append", default=[], metavar="NAME=PORT:HOST:TARGET_PORT",
                        help="listen on PORT for calls to service NAME, forward to HOST:TARGET_PORT")
    parser.add_argument("--tcp-inbound", action="append", default=[], metavar="PORT:APP_PORT",
                        help="like --inbound, for plain TCP (each connection checked by the mixer, logged as a TCP connection)")
    parser.add_argument("--tcp-outbound", action="append", default=[], metavar="NAME=PORT:HOST:TARGET_PORT",
                        help="like --outbound, for plain TCP")
    parser.add_argument("--mixer-grpc", default="127.0.0.1:9091", metavar="HOST:PORT",
                        help="the mixer's gRPC front doors; a host name is resolved by DNS")
    parser.add_argument("--listen-host", default="127.0.0.1",
                        help="address the inbound and outbound listeners bind (0.0.0.0 in a container)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fail-open", dest="fail_open", action="store_true",
                      help="serve requests when the mixer cannot be reached")
    mode.add_argument("--fail-closed", dest="fail_open", action="store_false",
                      help="deny (403) when the mixer cannot be reached (default)")
    parser.set_defaults(fail_open=False)
    parser.add_argument("--quota", action="append", default=[], metavar="INSTANCE",
                        help="quota instance each inbound request allocates through ext_authz (429 when out)")
    parser.add_argument("--rate-limit", action="append", default=[], metavar="INSTANCE",
                        help="quota instance each inbound request allocates through the rate limit service")
    parser.add_argument("--base-id", type=int, default=None, help="Envoy --base-id (default: pick a free one)")
    parser.add_argument("--admin-port", type=int, default=0, help="Envoy admin port (default: any free port)")
    parser.add_argument("--no-tracing", dest="tracing", action="store_false")
    parser.add_argument("--check-http-port", type=int, default=0, metavar="PORT",
                        help="ext_authz asks the mixer over plain HTTP on the --mixer-grpc host at PORT "
                             "(mixer serve --check-http-port): a cheaper round trip, without addresses, "
                             "times and certificates in the Check")
    parser.add_argument("--policy-discovery", action="store_true",
                        help="let the mixer serve the inbound ext_authz and RBAC filters and the TCP inbound "
                             "listeners' network ext_authz (ECDS): no Check where no rule can fire, identity "
                             "deny rules enforced by Envoy; without it, ext_authz is static and checks every "
                             "request and connection")
    parser.add_argument("--output", "-o", default="", help="write the bootstrap here (default: stdout)")
    parser.add_argument("--run", dest="run_envoy", action="store_true",
                        help="start Envoy with it and keep it running (restarted after a crash) until "
                             "SIGTERM/SIGINT/SIGHUP; each time Envoy's admin /ready answers LIVE, print one "
                             "line to stdout: 'envoy ready: admin http://127.0.0.1:PORT' (logs go to stderr); "
                             "without --output the bootstrap is a temporary file removed on exit")
    parser.add_argument("--envoy-log", default="-",
                        help="Envoy's log file when --run (default: '-', this process's stderr)")


def spec_from_args(args: argparse.Namespace) -> SidecarSpec:
    host, _, port = args.mixer_grpc.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--mixer-grpc {args.mixer_grpc!r}: expected HOST:PORT")
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return SidecarSpec(
        workload=args.workload,
        namespace=args.namespace,
        service=args.service,
        labels=labels,
        service_account=args.service_account,
        inbound=tuple(parse_inbound(x) for x in args.inbound),
        outbound=tuple(parse_outbound(x) for x in args.outbound),
        tcp_inbound=tuple(parse_inbound(x) for x in args.tcp_inbound),
        tcp_outbound=tuple(parse_outbound(x) for x in args.tcp_outbound),
        mixer_host=host,
        mixer_port=int(port),
        fail_open=args.fail_open,
        quotas=tuple(args.quota),
        rate_limits=tuple(args.rate_limit),
        admin_port=args.admin_port,
        listen_host=args.listen_host,
        tracing=args.tracing,
        policy_discovery=args.policy_discovery,
        check_http_port=args.check_http_port,
    )


def run(args: argparse.Namespace) -> int:
    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        print(f"mixer sidecar: {exc}", file=sys.stderr)
        return 2
    text = bootstrap_yaml(spec)
    if not args.run_envoy:
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return _supervise(spec.workload, text, args)


def _supervise(workload: str, text: str, args: argparse.Namespace) -> int:
    """Run Envoy on ``text`` until SIGTERM/SIGINT/SIGHUP; a bootstrap without --output lives in a
    temporary directory removed on the way out."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        # Held until the handlers are in place, so a signal during setup still reaches the cleanup.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        with tempfile.TemporaryDirectory(prefix=f"mixer-sidecar-{workload}-") as workdir:
            path = Path(args.output) if args.output else Path(workdir) / f"{workload}.yaml"
            envoy = EnvoyProcess(path, base_id=args.base_id, log_path=args.envoy_log)
            try:
                supervisor = Supervisor(envoy, on_ready=_announce_ready)
                if on_main_thread:
                    supervisor.stop_on_signals()
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                path.write_text(text)
                # This thread spawns Envoy and stays in run(): Envoy's PDEATHSIG follows this thread.
                return supervisor.run()
            finally:
                envoy.close()
    finally:
        if on_main_thread:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _announce_ready(envoy: EnvoyProcess) -> None:
    """The one stdout line a script waits for; logs go to stderr."""
    print(f"{READY_PREFIX}http://{envoy.admin_address}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixer sidecar", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

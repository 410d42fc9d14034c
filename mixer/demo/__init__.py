"""``mixer demo``: the mixer on its default config, a three-service sample app behind Envoy sidecars,
steady load with some errors and a denied call, Prometheus when installed and Jaeger when built,
all on loopback.

    from mixer.demo.runner import Demo, DemoOptions
    Demo(DemoOptions()).run()      # until SIGINT/SIGTERM; every child is stopped by its PID
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second into the frontend")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between summary lines")
    parser.add_argument("--no-prometheus", dest="prometheus", action="store_false",
                        help="do not start Prometheus even when installed")
    parser.add_argument("--no-jaeger", dest="jaeger", action="store_false",
                        help="do not start Jaeger even when built (python -m mixer.thirdparty jaeger)")
    parser.add_argument("--scrape-interval", default="5s", help="Prometheus scrape interval (default 5s)")
    parser.add_argument("--any-ports", action="store_true",
                        help="pick free ports for everything instead of 15014/9091/42422/9090/16686")
    parser.add_argument("--stackdriver-endpoint", default="", metavar="HOST:PORT|fake",
                        help="also send Istio's stackdriver metrics to Cloud Monitoring at HOST:PORT "
                             "(monitoring.googleapis.com:443 with application default credentials), or to a "
                             "loopback fake MetricService the demo starts ('fake')")
    parser.add_argument("--stackdriver-project", default="mixer-demo", help="project id for --stackdriver-endpoint")
    parser.add_argument("--stackdriver-insecure", action="store_true",
                        help="plaintext, no credentials: for a fake or private proxy at --stackdriver-endpoint")
    parser.add_argument("--kafka", action="store_true",
                        help="run the mixer as a Kafka front door with two workers (a single-node Kafka broker, "
                             "fetched with Maven into ~/.cache/mixer on first use)")


def run(args: argparse.Namespace) -> int:
    from mixer.demo.runner import Demo, DemoOptions  # Envoy and the sample app load only for the demo

    options = DemoOptions(rate=args.rate, interval=args.interval, prometheus=args.prometheus,
                          jaeger=args.jaeger, scrape_interval=args.scrape_interval, any_ports=args.any_ports,
                          stackdriver_endpoint=args.stackdriver_endpoint, stackdriver_project=args.stackdriver_project,
                          stackdriver_insecure=args.stackdriver_insecure, kafka=args.kafka)
    return Demo(options).run()

"""Third-party programs the mixer works beside: Jaeger v2 and an OpenTelemetry Collector (with the
contrib components the tests and benchmarks use), built from source with Go, and Apache Kafka's
broker, fetched with Maven, into a per-user cache once; runners that start them on free loopback
ports and stop them by PID.

    python -m mixer.thirdparty jaeger otelcol kafka    # builds what is missing, prints the paths
"""

from __future__ import annotations

from mixer.thirdparty._build import PROGRAMS, BuildError, Program, cache_root, cached, ensure
from mixer.thirdparty.jaeger import JaegerServer
from mixer.thirdparty.kafka import KafkaBroker
from mixer.thirdparty.otelcol import CollectorServer

__all__ = ["PROGRAMS", "BuildError", "CollectorServer", "JaegerServer", "KafkaBroker", "Program", "cache_root", "cached", "ensure"]

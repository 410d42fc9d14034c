"""Third-party programs the mixer works beside: Jaeger v2 and an OpenTelemetry Collector (with the
contrib components the tests and benchmarks use), built from source with Go into a per-user cache
once, and runners that start them on free loopback ports and stop them by PID.

    python -m mixer.thirdparty jaeger otelcol    # builds what is missing, prints the binaries' paths
"""

from __future__ import annotations

from mixer.thirdparty._build import PROGRAMS, BuildError, Program, cache_root, cached, ensure
from mixer.thirdparty.jaeger import JaegerServer
from mixer.thirdparty.otelcol import CollectorServer

__all__ = ["PROGRAMS", "BuildError", "CollectorServer", "JaegerServer", "Program", "cache_root", "cached", "ensure"]

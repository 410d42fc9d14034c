"""``mixer demo`` as a user runs it: metrics from every sample service, and nothing left after Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mixer.thirdparty import cached

SERVICES = {"frontend", "catalog", "reviews"}


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def services_in(metrics_url: str) -> set[str]:
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return set()
    return {
        sample.labels["destination_service_name"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "istio_requests_total"
    }


def test_demo_reports_every_service_and_leaves_no_child_behind() -> None:
    started = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, "-m", "mixer.cli", "demo", "--any-ports", "--interval", "1", "--scrape-interval", "1s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        metrics_url, jaeger_line, pids = "", "", []
        while not pids:
            line = lines.get(timeout=60)
            if line.lstrip().startswith("jaeger "):
                jaeger_line = line
            if match := re.search(r"metrics\s+(http://127\.0\.0\.1:\d+/metrics)", line):
                metrics_url = match.group(1)
            if match := re.search(r"child pids\s+([\d ]+)", line):
                pids = [int(p) for p in match.group(1).split()]
        assert metrics_url and len(pids) >= 5  # mixer, four sidecars (and Prometheus when installed)
        if cached("jaeger"):  # `make test` builds it first; the demo itself never builds it
            match = re.search(r"(http://127\.0\.0\.1:\d+)/api/services", jaeger_line)
            assert match, jaeger_line
            with urllib.request.urlopen(f"{match.group(1)}/api/services", timeout=10) as reply:
                assert reply.status == 200
        else:
            assert "not built yet" in jaeger_line, jaeger_line

        seen: set[str] = set()
        while not SERVICES <= seen and time.monotonic() - started < 30:
            seen = services_in(metrics_url)
            time.sleep(0.2)
        assert SERVICES <= seen, f"istio_requests_total within 30 s named only {seen}"

        if cached("jaeger"):  # the sidecars' spans reach the demo's Jaeger through the mixer
            api = re.search(r"(http://127\.0\.0\.1:\d+)/api/services", jaeger_line)
            assert api
            traced: set[str] = set()
            while not {"frontend", "catalog"} <= traced and time.monotonic() - started < 60:
                with urllib.request.urlopen(f"{api.group(1)}/api/services", timeout=10) as reply:
                    traced = set(json.loads(reply.read())["data"] or [])
                time.sleep(0.5)
            assert {"frontend", "catalog"} <= traced, f"Jaeger's services within 60 s: {traced}"

        while "requests/s" not in lines.get(timeout=30):  # a live summary line per interval
            pass

        children = descendants(demo.pid) | set(pids)
        assert set(pids) <= children
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, "".join(output)
        left = sorted(pid for pid in children if alive(pid))
        assert not left, f"still running after SIGINT: {left}"
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGKILL)
            demo.wait()


def test_demo_sends_istio_metrics_to_a_stackdriver_endpoint() -> None:
    from adapters.stackdriver.fake import FakeMetricService

    fake = FakeMetricService()
    fake.start()
    demo = subprocess.Popen(
        [sys.executable, "-m", "mixer.cli", "demo", "--any-ports", "--no-prometheus", "--interval", "1",
         "--stackdriver-endpoint", fake.endpoint, "--stackdriver-insecure", "--stackdriver-project", "demo-project"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(demo.stdout or []), daemon=True).start()

    def served(service: FakeMetricService) -> set[str]:
        return {
            dict(ts.metric.labels)["destination_service_name"]
            for points in service.series("istio.io/service/server/request_count").values() for ts in points
        }

    try:
        # the handler pushes every 10 s: the first push after the sidecars' first reports names every service
        assert fake.wait_for(lambda f: SERVICES <= served(f), timeout=60), f"server request counts for {served(fake)}"
        ts = next(iter(fake.series("istio.io/service/server/request_count").values()))[-1]
        assert ts.resource.type == "k8s_container" and ts.resource.labels["project_id"] == "demo-project"
        assert ts.points[0].value.int64_value > 0
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, "".join(output)
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGKILL)
            demo.wait()
        fake.stop()

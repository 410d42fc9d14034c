"""The handler against the loopback fake MetricService: the exact TimeSeries written, Cloud
Monitoring's request rules, descriptors, partial failures and outages, and the drop accounting."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import grpc
import pytest
from google.protobuf import text_format

from adapters.stackdriver import StackdriverHandler
from adapters.stackdriver.fake import FakeMetricService, TimeSeriesPb, series_key
from mixer.sdk import Env, MetricInstance, ParamsError

from .conftest import PROJECT, Build, FakeClock, dropped, schema

COUNT = "rc.instance.ns"
LATENCY = "lat.instance.ns"
POD = ("namespace_name", "pod_name", "location", "cluster_name")


def count_info(**extra: Any) -> dict[str, Any]:
    return {COUNT: {"kind": "CUMULATIVE", "value": "INT64", **extra}}


async def push(handler: StackdriverHandler) -> int:
    """One push: collect, then wait until the queue has delivered or dropped all of it."""
    offered = handler.flush()
    await handler.queue.flush()
    return offered


def accounted(handler: StackdriverHandler) -> bool:
    queue = handler.queue
    return queue.offered == queue.sent + sum(queue.dropped.values())


def expected(text: str) -> Any:
    ts = TimeSeriesPb()
    text_format.Parse(text, ts)
    return ts


async def test_exact_time_series_for_a_known_stream(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(
        {COUNT: {"kind": "CUMULATIVE", "value": "INT64", "metricType": "istio.io/service/server/request_count"},
         LATENCY: {"kind": 3, "value": 5, "metricType": "istio.io/service/server/response_latencies", "unit": "ms",
                   "buckets": {"explicitBuckets": {"bounds": [1, 10, 100]}}}},
        {COUNT: schema(COUNT, ("code", "source")),
         LATENCY: schema(LATENCY, ("code",), "k8s_pod", POD)},
        location="us-east1-b",
    )
    await handler.start()
    try:
        start = clock.now
        handler.handle_metric([
            MetricInstance(COUNT, 1, (200, "a")),
            MetricInstance(COUNT, 1, (200, "a")),
            MetricInstance(COUNT, 1, (503, "b")),
            MetricInstance(LATENCY, dt.timedelta(milliseconds=5), (200,), ("default", "web-1", "", "mesh")),
            MetricInstance(LATENCY, 50, (200,), ("default", "web-1", "", "mesh")),
            MetricInstance(LATENCY, 10.0, (200,), ("default", "web-1", "", "mesh")),  # on a bound: the upper bucket
        ])
        clock.advance(10)
        assert await push(handler) == 3
        got = {series_key(ts): ts for ts in fake.written}
        want = [expected(f"""
            metric {{ type: "istio.io/service/server/request_count" labels {{ key: "code" value: "200" }}
                      labels {{ key: "source" value: "a" }} }}
            resource {{ type: "global" labels {{ key: "project_id" value: "{PROJECT}" }} }}
            metric_kind: CUMULATIVE value_type: INT64
            points {{ interval {{ start_time {{ seconds: {int(start)} }} end_time {{ seconds: {int(start) + 10} }} }}
                      value {{ int64_value: 2 }} }}"""),
            expected(f"""
            metric {{ type: "istio.io/service/server/request_count" labels {{ key: "code" value: "503" }}
                      labels {{ key: "source" value: "b" }} }}
            resource {{ type: "global" labels {{ key: "project_id" value: "{PROJECT}" }} }}
            metric_kind: CUMULATIVE value_type: INT64
            points {{ interval {{ start_time {{ seconds: {int(start)} }} end_time {{ seconds: {int(start) + 10} }} }}
                      value {{ int64_value: 1 }} }}"""),
            expected(f"""
            metric {{ type: "istio.io/service/server/response_latencies" labels {{ key: "code" value: "200" }} }}
            resource {{ type: "k8s_pod" labels {{ key: "project_id" value: "{PROJECT}" }}
                        labels {{ key: "namespace_name" value: "default" }} labels {{ key: "pod_name" value: "web-1" }}
                        labels {{ key: "location" value: "us-east1-b" }} labels {{ key: "cluster_name" value: "mesh" }} }}
            metric_kind: CUMULATIVE value_type: DISTRIBUTION
            points {{ interval {{ start_time {{ seconds: {int(start)} }} end_time {{ seconds: {int(start) + 10} }} }}
                      value {{ distribution_value {{
                        count: 3 mean: 0 sum_of_squared_deviation: 0
                        bucket_options {{ explicit_buckets {{ bounds: [1, 10, 100] }} }}
                        bucket_counts: [0, 1, 2, 0] }} }} }}"""),
        ]
        # mean and sum of squared deviation: floating point, compared apart
        observed = [5.0, 50.0, 10.0]
        mean = sum(observed) / 3
        dist = got[series_key(want[2])].points[0].value.distribution_value
        assert dist.mean == pytest.approx(mean) and dist.sum_of_squared_deviation == pytest.approx(sum((x - mean) ** 2 for x in observed))
        want_dist = want[2].points[0].value.distribution_value
        want_dist.mean, want_dist.sum_of_squared_deviation = dist.mean, dist.sum_of_squared_deviation
        assert got == {series_key(ts): ts for ts in want}

        # The next push: the running totals, the same start time, one point per series fed since.
        handler.handle_metric([MetricInstance(COUNT, 1, (200, "a")),
                               MetricInstance(LATENCY, 0.5, (200,), ("default", "web-1", "", "mesh"))])
        clock.advance(10)
        assert await push(handler) == 2
        latest = {ts.metric.type: ts for ts in fake.written[3:]}
        count = latest["istio.io/service/server/request_count"].points[0]
        assert count.value.int64_value == 3 and count.interval.start_time.seconds == int(start)
        assert count.interval.end_time.seconds == int(start) + 20
        dist = latest["istio.io/service/server/response_latencies"].points[0].value.distribution_value
        assert (dist.count, list(dist.bucket_counts)) == (4, [1, 1, 2, 0])
        assert dist.mean == pytest.approx((5 + 50 + 10 + 0.5) / 4)
        assert dist.sum_of_squared_deviation == pytest.approx(sum((x - dist.mean) ** 2 for x in (5, 50, 10, 0.5)))
        assert accounted(handler) and handler.queue.sent == 5 == fake.points_written
    finally:
        await handler.close()


async def test_delta_and_gauge(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(
        {"d.instance.ns": {"kind": "DELTA", "value": "DOUBLE"},
         "g.instance.ns": {"kind": "GAUGE", "value": "INT64"},
         "gd.instance.ns": {"kind": "GAUGE", "value": "DISTRIBUTION",
                            "buckets": {"linearBuckets": {"numFiniteBuckets": 2, "width": 10, "offset": 0}}}},
        {"d.instance.ns": schema("d.instance.ns", ("w",)), "g.instance.ns": schema("g.instance.ns", ("w",)),
         "gd.instance.ns": schema("gd.instance.ns", ("w",))},
    )
    await handler.start()
    try:
        t0 = clock.now
        handler.handle_metric([MetricInstance("d.instance.ns", 1.5, ("x",)), MetricInstance("d.instance.ns", 2, ("x",)),
                               MetricInstance("g.instance.ns", 7, ("x",)), MetricInstance("g.instance.ns", 4, ("x",)),
                               MetricInstance("gd.instance.ns", -1, ("x",)), MetricInstance("gd.instance.ns", 25, ("x",))])
        clock.advance(10)
        await push(handler)
        clock.advance(5)
        handler.handle_metric([MetricInstance("d.instance.ns", 1, ("x",)), MetricInstance("gd.instance.ns", 5, ("x",))])
        clock.advance(5)
        await push(handler)
        by_type: dict[str, list[Any]] = {}
        for ts in fake.written:
            by_type.setdefault(ts.metric.type.rsplit("/", 1)[1], []).append(ts.points[0])
        first, second = by_type["d.instance.ns"]
        assert (first.value.double_value, second.value.double_value) == (3.5, 1.0)  # each interval's own sum
        assert (first.interval.start_time.seconds, first.interval.end_time.seconds) == (int(t0), int(t0) + 10)
        assert (second.interval.start_time.seconds, second.interval.end_time.seconds) == (int(t0) + 10, int(t0) + 20)
        (gauge,) = by_type["g.instance.ns"]  # not fed again: no second point
        assert gauge.value.int64_value == 4 and not gauge.interval.HasField("start_time")
        one, two = (p.value.distribution_value for p in by_type["gd.instance.ns"])
        # linear 2 finite buckets of width 10 from 0: underflow, [0,10), [10,20), overflow
        assert (list(one.bucket_counts), one.count, list(two.bucket_counts), two.count) == ([1, 0, 0, 1], 2, [0, 1, 0, 0], 1)
        assert accounted(handler)
    finally:
        await handler.close()


async def test_at_most_200_series_per_request(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("i",))})
    await handler.start()
    try:
        handler.handle_metric([MetricInstance(COUNT, 1, (i,)) for i in range(450)])
        clock.advance(10)
        assert await push(handler) == 450
        assert [len(r.time_series) for r in fake.requests] == [200, 200, 50]
        assert {ts.metric.labels["i"] for ts in fake.written} == {str(i) for i in range(450)}
        assert handler.queue.sent == 450 and accounted(handler)
    finally:
        await handler.close()


async def test_descriptor_created_once_before_the_first_write(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(count_info(unit="1", description="requests"), {COUNT: schema(COUNT, ("code",))})
    await handler.start()
    try:
        for round_ in range(3):
            handler.handle_metric([MetricInstance(COUNT, 1, (200,))])
            clock.advance(10)
            await push(handler)
        metric_type = "custom.googleapis.com/" + COUNT
        assert fake.descriptor_creates == [metric_type]
        assert fake.calls["GetMetricDescriptor"] == 1 and fake.calls["CreateTimeSeries"] == 3
        descriptor = fake.descriptors[metric_type]
        assert (descriptor.unit, descriptor.description, [label.key for label in descriptor.labels]) == ("1", "requests", ["code"])
        assert [ts.points[0].value.int64_value for ts in fake.written] == [1, 2, 3]
    finally:
        await handler.close()


async def test_partial_failure_counts_the_refused_points_and_logs_once(
    build: Build, fake: FakeMetricService, clock: FakeClock, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("code",))})
    fake.reject(lambda ts: "timeSeries[{i}]: refused by test" if ts.metric.labels["code"] == "500" else None)
    await handler.start()
    try:
        with caplog.at_level(logging.WARNING, logger="test.stackdriver"):
            for _ in range(2):
                handler.handle_metric([MetricInstance(COUNT, 1, (code,)) for code in (200, 404, 500)])
                clock.advance(10)
                await push(handler)
        assert handler.queue.sent == 4 and handler.queue.dropped["permanent_error"] == 2 and accounted(handler)
        assert dropped(env, "permanent_error") == 2
        assert {ts.metric.labels["code"] for ts in fake.written} == {"200", "404"}
        ours = [r for r in caplog.records if "Cloud Monitoring refused points of custom.googleapis.com/rc.instance.ns" in r.getMessage()]
        assert len(ours) == 1, [r.getMessage() for r in caplog.records]
    finally:
        await handler.close()


async def test_recovers_after_unavailable(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("code",))})
    await handler.start()
    try:
        fake.fail_next(grpc.StatusCode.UNAVAILABLE, times=4)
        handler.handle_metric([MetricInstance(COUNT, 1, (code,)) for code in (200, 503)])
        clock.advance(10)
        assert handler.flush() == 2
        # While the outage lasts the next push waits; the store keeps counting meanwhile.
        handler.handle_metric([MetricInstance(COUNT, 1, (200,))])
        clock.advance(10)
        assert handler.flush() == 0 and handler.deferred_flushes == 1
        await handler.queue.flush()
        assert fake.calls["GetMetricDescriptor"] + fake.calls.get("CreateTimeSeries", 0) >= 4
        clock.advance(10)
        assert await push(handler) == 1  # only the series fed since the first push
        series = fake.series()
        assert [[p.points[0].value.int64_value for p in points] for points in series.values()] in ([[1, 2], [1]], [[1], [1, 2]])
        assert handler.queue.sent == 3 and accounted(handler) and fake.points_written == 3
        assert handler.queue.dropped == dict.fromkeys(handler.queue.dropped, 0)
    finally:
        await handler.close()


async def test_gives_up_after_the_retry_budget_and_counts_it(build: Build, fake: FakeMetricService, clock: FakeClock, env: Env) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("code",))},
                    delivery={"retry": {"initialInterval": "10ms", "maxInterval": "20ms", "maxElapsedTime": "100ms"}})
    await handler.start()
    try:
        fake.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, times=1000, message="Quota exceeded")
        handler.handle_metric([MetricInstance(COUNT, 1, (code,)) for code in (200, 404, 503)])
        clock.advance(10)
        await push(handler)
        assert handler.queue.dropped["retries_exhausted"] == 3 and handler.queue.sent == 0 and accounted(handler)
        assert dropped(env, "retries_exhausted") == 3
    finally:
        await handler.close()


async def test_one_point_per_series_per_request_and_in_order(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("i",))}, delivery={"senders": 4, "batchSize": 50})
    await handler.start()
    try:
        fake.fail_next(grpc.StatusCode.UNAVAILABLE, times=3)
        for _ in range(5):
            handler.handle_metric([MetricInstance(COUNT, 1, (i,)) for i in range(120)])
            clock.advance(10)
            handler.flush()  # some pushes find the previous one still going, and wait
        await handler.queue.flush()
        assert handler.deferred_flushes >= 1  # the case under test happened
        clock.advance(10)
        await push(handler)
        for request in fake.requests:
            keys = [series_key(ts) for ts in request.time_series]
            assert len(keys) == len(set(keys)) and all(len(ts.points) == 1 for ts in request.time_series)
        for points in fake.series().values():
            ends = [p.points[0].interval.end_time.seconds for p in points]
            assert ends == sorted(set(ends))  # strictly later each time
            assert points[-1].points[0].value.int64_value == 5  # nothing lost: the totals caught up
        assert accounted(handler) and handler.queue.dropped == dict.fromkeys(handler.queue.dropped, 0)
    finally:
        await handler.close()


async def test_bad_values_series_cap_and_unknown_instances_are_counted(build: Build, env: Env, clock: FakeClock) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("i",))}, maxSeriesPerMetric=2)
    handler.handle_metric([
        MetricInstance(COUNT, "many", (1,)), MetricInstance(COUNT, -1, (1,)), MetricInstance(COUNT, "2", (1,)),
        MetricInstance(COUNT, 1, (2,)), MetricInstance(COUNT, 1, (3,)), MetricInstance("other.instance.ns", 1, (1,)),
    ])
    assert dropped(env, "bad_value") == 2
    assert dropped(env, "series_limit") == 1
    assert dropped(env, "unknown_instance") == 1
    assert {key: s.value for key, s in handler.stores[COUNT].series.items()} == {(1,): 2, (2,): 1}
    await handler.close()  # never started: nothing to send, safe
    await handler.close()


async def test_close_pushes_what_was_aggregated(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("code",))})
    await handler.start()
    handler.handle_metric([MetricInstance(COUNT, 1, (200,))])
    clock.advance(1)
    await handler.close()
    await handler.close()
    assert fake.points_written == 1 and accounted(handler)


def test_labels_and_resources_are_checked_against_the_instances(build: Build) -> None:
    with pytest.raises(ParamsError) as err:
        build(
            {COUNT: {"kind": "CUMULATIVE", "value": "INT64", "labelNames": ["code", "nope"]},
             LATENCY: {"kind": "CUMULATIVE", "value": "INT64"},
             "c.instance.ns": {"kind": "CUMULATIVE", "value": "INT64"}},
            {COUNT: schema(COUNT, ("code",)),
             LATENCY: schema(LATENCY, ("code",), "k8s_container", ("namespace_name", "pod_name")),
             "c.instance.ns": schema("c.instance.ns", (), "k8s_pod", POD + ("zone",)),
             "unlisted.instance.ns": schema("unlisted.instance.ns", ())},
        )
    problems = [f"{path}: {message}" for path, message in err.value.problems]
    assert problems == [
        f"metricInfo[{COUNT}].labelNames: nope not among {COUNT}'s dimensions (code)",
        f"metricInfo[{LATENCY}]: {LATENCY}: monitored resource k8s_container needs location, cluster_name, container_name among monitoredResourceDimensions",
        "metricInfo[c.instance.ns]: c.instance.ns: monitored resource k8s_pod has no label zone (it has project_id, location, cluster_name, namespace_name, pod_name)",
        "metricInfo: instance unlisted.instance.ns is routed here but has no metricInfo entry",
    ]


async def test_label_subset_and_map_values(build: Build, fake: FakeMetricService, clock: FakeClock) -> None:
    handler = build(count_info(labelNames=["code"]), {COUNT: schema(COUNT, ("source", "code", "headers"))})
    await handler.start()
    try:
        handler.handle_metric([MetricInstance(COUNT, 1, ("a", 200, {"x": "1"})), MetricInstance(COUNT, 1, ("b", 200, {"y": "2"}))])
        clock.advance(10)
        await push(handler)
        (ts,) = fake.written
        assert dict(ts.metric.labels) == {"code": "200"} and ts.points[0].value.int64_value == 2
    finally:
        await handler.close()


async def test_close_during_an_outage_counts_what_it_could_not_push(
    build: Build, fake: FakeMetricService, clock: FakeClock, env: Env
) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("code",))},
                    delivery={"shutdownTimeout": "200ms", "retry": {"initialInterval": "50ms", "maxElapsedTime": "0s"}})
    await handler.start()
    fake.fail_next(grpc.StatusCode.UNAVAILABLE, times=10_000)
    handler.handle_metric([MetricInstance(COUNT, 1, (200,))])
    clock.advance(10)
    assert handler.flush() == 1  # this point is retried until shutdown
    handler.handle_metric([MetricInstance(COUNT, 1, (200,)), MetricInstance(COUNT, 1, (404,))])
    await handler.close()
    assert handler.queue.dropped["shutdown"] == 1 and accounted(handler)
    assert dropped(env, "shutdown") == 1 + 2  # the queued point, and the two series aggregated since
    assert fake.points_written == 0


def test_dimensions_that_cannot_be_labels_must_be_chosen(build: Build) -> None:
    with pytest.raises(ParamsError, match=r"dimensions cannot all be labels .*not Source-App"):
        build(count_info(), {COUNT: schema(COUNT, ("code", "Source-App"))})
    build(count_info(labelNames=["code"]), {COUNT: schema(COUNT, ("code", "Source-App"))})


async def test_missing_credentials_fail_start_with_a_clear_error(
    env: Env, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.stackdriver import StackdriverAdapter
    from adapters.stackdriver.client import CredentialsError

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    adapter = StackdriverAdapter()
    handler = adapter.build(adapter.parse_params({"projectId": PROJECT, "appCredentials": True}), env, {})
    with pytest.raises(CredentialsError, match="no usable Google credentials"):
        await handler.start()
    await handler.close()


async def test_a_service_account_key_file_builds_a_tls_client(env: Env, tmp_path: Any) -> None:
    """No Google service is reachable here: this checks the client is built with the key's
    credentials for the given endpoint, not that Google accepts them."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from adapters.stackdriver import StackdriverAdapter

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path / "key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "1", "private_key": pem.decode(),
        "client_email": f"mixer@{PROJECT}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    adapter = StackdriverAdapter()
    params = adapter.parse_params({"projectId": PROJECT, "serviceAccountPath": str(path), "endpoint": "monitoring.example:443"})
    handler = adapter.build(params, env, {})
    assert isinstance(handler, StackdriverHandler)
    await handler.start()
    try:
        client = handler._client
        assert client.api_endpoint == "monitoring.example:443"
        assert client.transport._credentials.service_account_email == f"mixer@{PROJECT}.iam.gserviceaccount.com"
    finally:
        await handler.close()


async def test_silent_series_expire_and_come_back_with_a_new_start(
    build: Build, fake: FakeMetricService, clock: FakeClock, env: Env
) -> None:
    handler = build(count_info(), {COUNT: schema(COUNT, ("pod",))}, seriesExpiry="30s", maxSeriesPerMetric=2)
    await handler.start()
    try:
        handler.handle_metric([MetricInstance(COUNT, 1, ("a",)), MetricInstance(COUNT, 1, ("b",))])
        clock.advance(10)
        await push(handler)
        for _ in range(4):  # "a" keeps going, "b" is gone (its pod was replaced)
            handler.handle_metric([MetricInstance(COUNT, 1, ("a",))])
            clock.advance(10)
            await push(handler)
        assert set(handler.stores[COUNT].series) == {("a",)}
        handler.handle_metric([MetricInstance(COUNT, 1, ("b",))])  # back: a new series again, within the cap
        assert dropped(env, "series_limit") == 0 and len(handler.stores[COUNT].series) == 2
        start = clock.now
        clock.advance(10)
        await push(handler)
        b_points = fake.series()[next(k for k in fake.series() if k[1] == (("pod", "b"),))]
        assert [p.points[0].value.int64_value for p in b_points] == [1, 1]
        assert b_points[-1].points[0].interval.start_time.seconds == int(start)  # a reset, as Cloud Monitoring reads it
        assert accounted(handler) and handler.queue.dropped == dict.fromkeys(handler.queue.dropped, 0)
    finally:
        await handler.close()


async def test_a_rebuilt_handler_keeps_cumulative_series_whose_definition_did_not_change(
    build: Build, fake: FakeMetricService, clock: FakeClock
) -> None:
    infos = {COUNT: {"kind": "CUMULATIVE", "value": "INT64"}, "d.instance.ns": {"kind": "DELTA", "value": "INT64"}}
    schemas = {COUNT: schema(COUNT, ("code",)), "d.instance.ns": schema("d.instance.ns", ("code",))}
    old = build(infos, schemas)
    await old.start()
    start = clock.now
    old.handle_metric([MetricInstance(COUNT, 1, (200,)), MetricInstance(COUNT, 1, (200,))])
    # a reload: the same count, the delta metric's labels changed (its series start anew)
    new = build(infos, {**schemas, "d.instance.ns": schema("d.instance.ns", ("code", "path"))})
    new.take_over(old)
    await old.close()  # the old handler pushes what it holds on close
    await new.start()
    try:
        clock.advance(10)
        new.handle_metric([MetricInstance(COUNT, 1, (200,)), MetricInstance("d.instance.ns", 1, (200, "/"))])
        await push(new)
        counts = [ts.points[0] for ts in fake.written if ts.metric.type.endswith(COUNT)]
        last = counts[-1]
        assert last.value.int64_value == 3  # the totals went on across the rebuild
        assert last.interval.start_time.seconds == int(start)  # and so did the start time
        assert new.stores[COUNT] is old.stores[COUNT]
        assert new.stores["d.instance.ns"] is not old.stores["d.instance.ns"]
        assert accounted(new)
    finally:
        await new.close()

"""The handler's series stores: kinds, buckets, label mapping, expiry, cardinality cap, escaping."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from adapters.prometheus import OVERFLOW_LABEL, PrometheusHandler, StoreCollector
from adapters.prometheus.exposition import families_in, render
from mixer.sdk import MetricInstance

from .conftest import Build, FakeClock, dropped

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def scrape(handler: PrometheusHandler, accept: str = "") -> str:
    render_all, _content_type = handler.scrape(accept)
    return render_all().decode()


def samples(handler: PrometheusHandler, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples named ``name`` from a text scrape, keyed by sorted label pairs."""
    out = {}
    for family in text_string_to_metric_families(scrape(handler)):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def counter_params(**extra: Any) -> dict[str, Any]:
    return {"metrics": [{"name": "requests_total", "instance_name": "rc.instance.ns", "kind": "COUNTER",
                         "label_names": ["source", "code"], **extra}]}


def test_counter_adds_per_label_set(build: Build) -> None:
    handler = build(counter_params(), {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([
        MetricInstance("rc.instance.ns", 1, ("a", 200)),
        MetricInstance("rc.instance.ns", 1, ("a", 200)),
        MetricInstance("rc.instance.ns", 2.5, ("b", 503)),
    ])
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("a", 200))])
    assert samples(handler, "istio_requests_total") == {
        (("code", "200"), ("source", "a")): 3.0,
        (("code", "503"), ("source", "b")): 2.5,
    }


def test_counter_rejects_negative_and_non_numbers(build: Build, env: Any) -> None:
    handler = build(counter_params(), {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([
        MetricInstance("rc.instance.ns", -1, ("a", 200)),
        MetricInstance("rc.instance.ns", "many", ("a", 200)),
        MetricInstance("rc.instance.ns", "2", ("a", 200)),
    ])
    assert samples(handler, "istio_requests_total") == {(("code", "200"), ("source", "a")): 2.0}
    assert dropped(env, "bad_value") == 2


def test_gauge_keeps_last_value(build: Build) -> None:
    handler = build(
        {"metrics": [{"name": "queue", "instance_name": "q.instance.ns", "kind": "GAUGE", "label_names": ["w"]}]},
        {"q.instance.ns": ["w"]},
    )
    handler.handle_metric([MetricInstance("q.instance.ns", 5, ("x",)), MetricInstance("q.instance.ns", 3, ("x",))])
    handler.handle_metric([MetricInstance("q.instance.ns", -2.5, ("y",))])
    assert samples(handler, "istio_queue") == {(("w", "x"),): 3.0, (("w", "y"),): -2.5}


def histogram(build: Build, buckets: dict[str, Any]) -> PrometheusHandler:
    return build(
        {"metrics": [{"name": "latency", "instance_name": "l.instance.ns", "kind": "DISTRIBUTION",
                      "label_names": ["w"], "buckets": buckets}]},
        {"l.instance.ns": ["w"]},
    )


def buckets_of(handler: PrometheusHandler) -> dict[str, float]:
    return {dict(k)["le"]: v for k, v in samples(handler, "istio_latency_bucket").items()}


def test_explicit_buckets_count_values_on_a_bound_in_that_bucket(build: Build) -> None:
    handler = histogram(build, {"explicit_buckets": {"bounds": [0.1, 1, 10]}})
    handler.handle_metric([MetricInstance("l.instance.ns", v, ("x",)) for v in (0.05, 0.1, 0.5, 1, 20)])
    assert buckets_of(handler) == {"0.1": 2, "1.0": 4, "10.0": 4, "+Inf": 5}
    assert samples(handler, "istio_latency_count") == {(("w", "x"),): 5}
    assert samples(handler, "istio_latency_sum") == {(("w", "x"),): pytest.approx(21.65)}


def test_linear_buckets(build: Build) -> None:
    handler = histogram(build, {"linearBuckets": {"numFiniteBuckets": 3, "width": 10, "offset": 5}})
    handler.handle_metric([MetricInstance("l.instance.ns", v, ("x",)) for v in (1, 15, 16, 40)])
    assert buckets_of(handler) == {"5.0": 1, "15.0": 2, "25.0": 3, "35.0": 3, "+Inf": 4}


def test_exponential_buckets_as_istio_request_bytes(build: Build) -> None:
    handler = histogram(build, {"exponentialBuckets": {"numFiniteBuckets": 8, "scale": 1, "growthFactor": 10}})
    handler.handle_metric([MetricInstance("l.instance.ns", v, ("x",)) for v in (0, 150, 5_000_000, 10**9)])
    got = buckets_of(handler)
    assert list(got) == ["1.0", "10.0", "100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "1e+08", "+Inf"]
    assert got["1.0"] == 1 and got["1000.0"] == 2 and got["1e+07"] == 3 and got["+Inf"] == 4


def test_duration_values_are_seconds(build: Build) -> None:
    handler = histogram(build, {"explicit_buckets": {"bounds": [0.01, 0.1]}})
    handler.handle_metric([MetricInstance("l.instance.ns", dt.timedelta(milliseconds=50), ("x",))])
    assert buckets_of(handler) == {"0.01": 0, "0.1": 1, "+Inf": 1}
    assert samples(handler, "istio_latency_sum") == {(("w", "x"),): 0.05}


def test_dimensions_map_to_labels_by_name(build: Build) -> None:
    # The instance orders its dimensions differently and carries one the metric does not use.
    handler = build(counter_params(), {"rc.instance.ns": ["code", "extra", "source"]})
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, (404, "ignored", "web"))])
    assert samples(handler, "istio_requests_total") == {(("code", "404"), ("source", "web")): 1.0}


def test_label_not_among_dimensions_fails_the_build(build: Build) -> None:
    with pytest.raises(ValueError, match=r"metrics\[0\].label_names: code not among rc.instance.ns"):
        build(counter_params(), {"rc.instance.ns": ["source"]})


def test_routed_instance_without_metric_fails_the_build(build: Build) -> None:
    with pytest.raises(ValueError, match="instance other.instance.ns is routed here"):
        build(counter_params(), {"rc.instance.ns": ["source", "code"], "other.instance.ns": []})


def test_unknown_instance_at_runtime_is_counted(build: Build, env: Any) -> None:
    handler = build(counter_params(), {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([MetricInstance("stray.instance.ns", 1, ())])
    assert dropped(env, "unknown_instance") == 1


def test_label_values_are_escaped_and_read_back_intact(build: Build) -> None:
    handler = build(counter_params(), {"rc.instance.ns": ["source", "code"]})
    nasty = 'say "hi"\\n\nnext line ünïcode'
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, (nasty, True))])
    text = scrape(handler)
    assert r'source="say \"hi\"\\n\nnext line ünïcode"' in text
    assert samples(handler, "istio_requests_total") == {(("code", "true"), ("source", nasty)): 1.0}
    families = list(parse_openmetrics(scrape(handler, OPENMETRICS)))
    requests = next(f for f in families if f.name == "istio_requests")
    assert requests.samples[0].labels["source"] == nasty


def test_idle_series_expire_after_the_configured_duration(build: Build, clock: FakeClock) -> None:
    params = counter_params()
    params["metricsExpirationPolicy"] = {"metricsExpiryDuration": "10m", "expiryCheckIntervalDuration": "1m"}
    handler = build(params, {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("old", 200))])
    clock.advance(300)
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("new", 200))])
    clock.advance(301)  # "old" idle 601 s, "new" 301 s; the next sweep is due
    assert set(dict(k)["source"] for k in samples(handler, "istio_requests_total")) == {"new"}
    clock.advance(300)
    handler.handle_metric([])  # the sweep also runs from the report path, scraped or not
    assert handler.stores["rc.instance.ns"].series == {}


def test_without_policy_series_never_expire(build: Build, clock: FakeClock) -> None:
    handler = build(counter_params(), {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("a", 200))])
    clock.advance(10**7)
    assert handler.expire() == 0
    assert len(samples(handler, "istio_requests_total")) == 1


def test_series_over_the_cap_fold_into_one_overflow_series(build: Build, env: Any) -> None:
    handler = build(counter_params(max_series=3), {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, (f"user-{i}", 200)) for i in range(10)])
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("user-0", 200))])  # known series still count
    got = samples(handler, "istio_requests_total")
    assert len(got) == 4
    assert got[(("code", OVERFLOW_LABEL), ("source", OVERFLOW_LABEL))] == 7
    assert got[(("code", "200"), ("source", "user-0"))] == 2
    assert dropped(env, "series_limit") == 7
    assert len(handler.stores["rc.instance.ns"].series) == 3


def test_handler_wide_cap_and_room_after_expiry(build: Build, clock: FakeClock) -> None:
    params = counter_params()
    params["max_series_per_metric"] = 1
    params["metricsExpirationPolicy"] = {"metricsExpiryDuration": "1m"}
    handler = build(params, {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("a", 200)), MetricInstance("rc.instance.ns", 1, ("b", 200))])
    clock.advance(61)
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("c", 200))])
    assert samples(handler, "istio_requests_total") == {(("code", "200"), ("source", "c")): 1.0}


def test_fast_exposition_equals_prometheus_client(build: Build) -> None:
    handler = build(
        {"metrics": [
            {"name": "requests_total", "instance_name": "rc.instance.ns", "kind": "COUNTER",
             "label_names": ["zone", "app", "code"], "description": 'All "requests"\\ counted\nhere'},
            {"name": "open", "instance_name": "g.instance.ns", "kind": "GAUGE", "label_names": []},
            {"name": "latency", "instance_name": "l.instance.ns", "kind": "DISTRIBUTION",
             "label_names": ["app", "zone", "method"], "buckets": {"explicit_buckets": {"bounds": [0.5, 1, 1e9]}}},
            {"name": "offset", "instance_name": "o.instance.ns", "kind": "DISTRIBUTION",
             "buckets": {"linear_buckets": {"num_finite_buckets": 2, "width": 1, "offset": -1}}},
            {"name": "empty_total", "instance_name": "e.instance.ns", "kind": "COUNTER"},
        ]},
        {"rc.instance.ns": ["app", "code", "zone"], "g.instance.ns": [], "l.instance.ns": ["method", "app", "zone"],
         "o.instance.ns": []},
    )
    handler.handle_metric([
        MetricInstance("rc.instance.ns", 3, ("web", 200, 'e"u\\1\n')),
        MetricInstance("rc.instance.ns", 1, ("db", 500, "us")),
        MetricInstance("g.instance.ns", 7, ()),
        MetricInstance("l.instance.ns", 0.7, ("GET", "web", "eu")),
        MetricInstance("l.instance.ns", 12345678.5, ("POST", "web", "eu")),
        MetricInstance("o.instance.ns", -0.5, ()),
    ])
    registry = CollectorRegistry()
    registry.register(StoreCollector(lambda: list(handler.stores.values())))
    families = families_in(list(handler.stores.values()))
    assert render(families, openmetrics=False) == generate_latest(registry).decode()
    assert render(families, openmetrics=True) + "# EOF\n" == generate_openmetrics(registry).decode()


def test_scrape_includes_the_mixers_own_metrics(build: Build, env: Any) -> None:
    handler = build(counter_params(), {"rc.instance.ns": ["source", "code"]})
    env.metrics.reports.labels("http").inc(4)
    text = scrape(handler)
    assert "mixer_reports_total{front_door=\"http\"} 4.0" in text
    assert "process_resident_memory_bytes" in text or "process_cpu_seconds_total" in text
    om = scrape(handler, OPENMETRICS)
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1
    _render, content_type = handler.scrape(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    _render, content_type = handler.scrape("text/plain")
    assert content_type.startswith("text/plain; version=0.0.4")


def test_same_dimensions_in_another_order_and_overflow_keep_label_order(build: Build) -> None:
    handler = build(counter_params(max_series=1), {"rc.instance.ns": ["code", "source"]})
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, (201, "web")),
                           MetricInstance("rc.instance.ns", 1, (500, "db"))])
    assert samples(handler, "istio_requests_total") == {
        (("code", "201"), ("source", "web")): 1.0,
        (("code", OVERFLOW_LABEL), ("source", OVERFLOW_LABEL)): 1.0,
    }


def test_map_valued_dimension_is_keyed_by_its_text(build: Build) -> None:
    handler = build(counter_params(), {"rc.instance.ns": ["source", "code"]})
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, ({"b": "2", "a": "1"}, 200))] * 2)
    assert samples(handler, "istio_requests_total") == {(("code", "200"), ("source", "a=1&b=2")): 2.0}

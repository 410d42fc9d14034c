"""The fake MetricService refuses what Cloud Monitoring refuses, so the handler tests prove something."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud.monitoring_v3.types import metric_service

from adapters.stackdriver.config import parse
from adapters.stackdriver.client import make_client
from adapters.stackdriver.fake import CreateTimeSeriesRequestPb, CreateTimeSeriesSummaryPb, FakeMetricService, TimeSeriesPb

CUSTOM = "custom.googleapis.com/x"


def point(labels: dict[str, str], end: int, start: int | None = None, metric_type: str = "istio.io/service/server/request_count") -> Any:
    ts = TimeSeriesPb()
    ts.metric.type = metric_type
    ts.metric.labels.update(labels)
    ts.resource.type = "global"
    ts.resource.labels["project_id"] = "test-project"
    ts.metric_kind = 3  # CUMULATIVE
    ts.value_type = 2  # INT64
    p = ts.points.add()
    p.interval.start_time.seconds = start if start is not None else end - 10
    p.interval.end_time.seconds = end
    p.value.int64_value = 1
    return ts


async def write(fake: FakeMetricService, *series: Any) -> Any:
    client = make_client(parse({"projectId": "test-project", "endpoint": fake.endpoint, "insecure": True}))
    try:
        request = CreateTimeSeriesRequestPb(name="projects/test-project", time_series=list(series))
        await client.create_time_series(request=metric_service.CreateTimeSeriesRequest.wrap(request), retry=None, timeout=5)
        return None
    except exceptions.GoogleAPICallError as exc:
        return exc
    finally:
        await client.transport.close()


def summary(exc: Any) -> tuple[int, int]:
    for detail in exc.details:
        if detail.Is(CreateTimeSeriesSummaryPb.DESCRIPTOR):
            found = CreateTimeSeriesSummaryPb()
            detail.Unpack(found)
            return found.total_point_count, found.success_point_count
    raise AssertionError(f"no CreateTimeSeriesSummary in {exc.details}")


async def test_accepts_good_series(fake: FakeMetricService) -> None:
    assert await write(fake, point({"a": "1"}, 100), point({"a": "2"}, 100)) is None
    assert fake.points_written == 2


async def test_refuses_more_than_200_series(fake: FakeMetricService) -> None:
    exc = await write(fake, *(point({"i": str(i)}, 100) for i in range(201)))
    assert isinstance(exc, exceptions.InvalidArgument) and fake.points_written == 0


async def test_refuses_a_second_point_of_a_series_in_one_request(fake: FakeMetricService) -> None:
    exc = await write(fake, point({"a": "1"}, 100), point({"a": "1"}, 110), point({"a": "2"}, 100))
    assert isinstance(exc, exceptions.InvalidArgument) and "timeSeries[1]" in exc.message
    assert summary(exc) == (3, 2) and fake.points_written == 2


async def test_refuses_points_out_of_order_and_bad_intervals(fake: FakeMetricService) -> None:
    assert await write(fake, point({"a": "1"}, 100)) is None
    exc = await write(fake, point({"a": "1"}, 100), point({"a": "2"}, 100, start=100))
    assert isinstance(exc, exceptions.InvalidArgument) and summary(exc) == (2, 0)
    assert "written in order" in exc.message and "start time must be before" in exc.message


async def test_refuses_custom_types_without_a_descriptor(fake: FakeMetricService) -> None:
    exc = await write(fake, point({"a": "1"}, 100, metric_type=CUSTOM))
    assert isinstance(exc, exceptions.InvalidArgument) and "no metric descriptor" in exc.message


@pytest.mark.parametrize("times", [1, 2])
async def test_scheduled_failures_then_success(fake: FakeMetricService, times: int) -> None:
    import grpc

    fake.fail_next(grpc.StatusCode.UNAVAILABLE, times=times)
    for _ in range(times):
        assert isinstance(await write(fake, point({"a": "1"}, 100)), exceptions.ServiceUnavailable)
    assert await write(fake, point({"a": "1"}, 100)) is None

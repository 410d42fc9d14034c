"""Admission: small checks pass on count alone; reports, whatever their size, also by bytes."""

from __future__ import annotations

from mixer.frontdoors.admission import SMALL_REQUEST_BYTES, Admission


def test_small_reports_are_admitted_by_bytes_and_small_checks_are_not() -> None:
    small = SMALL_REQUEST_BYTES // 2
    admission = Admission(max_bytes=3 * small, max_requests=100)
    assert [admission.try_enter(small, small_pass=False) for _ in range(4)] == [None, None, None, "inflight_bytes"]
    assert admission.try_enter(small) is None  # a check of the same size still goes through
    assert admission.try_enter(SMALL_REQUEST_BYTES + 1) == "inflight_bytes"  # a large one never does
    admission.leave(small)  # the check
    admission.leave(small)  # one report
    assert admission.try_enter(small, small_pass=False) is None
    assert (admission.bytes, admission.requests) == (3 * small, 3)


def test_the_request_count_refuses_everything() -> None:
    admission = Admission(max_bytes=1 << 30, max_requests=2)
    assert [admission.try_enter(10), admission.try_enter(10, small_pass=False)] == [None, None]
    assert admission.try_enter(10) == "inflight_requests"

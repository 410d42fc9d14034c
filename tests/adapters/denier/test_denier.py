"""The denier adapter: a fixed verdict with its valid duration and use count."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.denier import DenierAdapter
from mixer.sdk import PERMISSION_DENIED, UNAUTHENTICATED, Instance, ParamsError
from tests.adapters.support import env


async def test_denier_answers_its_fixed_verdict() -> None:
    adapter = DenierAdapter()
    params = adapter.parse_params(
        {"status": {"code": UNAUTHENTICATED, "message": "who are you"}, "validDuration": "2.5s", "validUseCount": 7}
    )
    handler = adapter.build(params, env(), {})
    result = await handler.check_checknothing(Instance("n", "checknothing", {}))
    assert (result.status_code, result.message) == (UNAUTHENTICATED, "who are you")
    assert (result.valid_duration, result.valid_use_count) == (dt.timedelta(seconds=2.5), 7)
    default = await adapter.build(adapter.parse_params({}), env(), {}).check_listentry(Instance("l", "listentry", {}))
    assert default.status_code == PERMISSION_DENIED


def test_denier_lists_every_bad_param() -> None:
    with pytest.raises(ParamsError) as caught:
        DenierAdapter().parse_params({"status": {"code": 99}, "validDuration": "-1s", "validUseCount": -2, "x": 1})
    assert sorted(p for p, _ in caught.value.problems) == ["status.code", "validDuration", "validUseCount", "x"]

"""The denier adapter (Mixer's): answers every check with a fixed status, duration and use count."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mixer.attributes import parse_duration
from mixer.sdk import (
    DEFAULT_VALID_DURATION,
    DEFAULT_VALID_USE_COUNT,
    PERMISSION_DENIED,
    Adapter,
    CheckResult,
    Env,
    Handler,
    Instance,
    InstanceSchema,
    ParamsError,
    unknown_fields,
)

__all__ = ["DenierAdapter", "DenierParams"]


@dataclass(frozen=True)
class DenierParams:
    status_code: int = PERMISSION_DENIED
    message: str = ""
    valid_duration: dt.timedelta = DEFAULT_VALID_DURATION
    valid_use_count: int = DEFAULT_VALID_USE_COUNT


class DenierHandler(Handler):
    def __init__(self, params: DenierParams) -> None:
        self.result = CheckResult(
            status_code=params.status_code,
            message=params.message,
            valid_duration=params.valid_duration,
            valid_use_count=params.valid_use_count,
        )

    async def check_checknothing(self, instance: Instance) -> CheckResult:
        return self.result

    async def check_listentry(self, instance: Instance) -> CheckResult:
        return self.result

    async def check_authorization(self, instance: Instance) -> CheckResult:
        return self.result


class DenierAdapter(Adapter):
    name = "denier"
    templates = frozenset({"checknothing", "listentry", "authorization"})

    def parse_params(self, raw: Mapping[str, Any]) -> DenierParams:
        problems = unknown_fields(raw, ("status", "validDuration", "validUseCount"))
        status = raw.get("status") or {}
        code, message = PERMISSION_DENIED, ""
        if not isinstance(status, dict):
            problems.append(("status", "must be a mapping with code and message"))
        else:
            problems += unknown_fields(status, ("code", "message", "details"), "status")
            code = status.get("code", PERMISSION_DENIED)
            message = status.get("message", "")
            if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 16:
                problems.append(("status.code", f"must be a google.rpc.Code number 0..16, got {code!r}"))
            if not isinstance(message, str):
                problems.append(("status.message", "must be a string"))
        duration = DEFAULT_VALID_DURATION
        if "validDuration" in raw:
            try:
                duration = parse_duration(str(raw["validDuration"]))
                if duration < dt.timedelta(0):
                    problems.append(("validDuration", "must not be negative"))
            except ValueError as exc:
                problems.append(("validDuration", str(exc)))
        count = raw.get("validUseCount", DEFAULT_VALID_USE_COUNT)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            problems.append(("validUseCount", f"must be a non-negative integer, got {count!r}"))
        if problems:
            raise ParamsError(problems)
        return DenierParams(code, message, duration, count)

    def build(self, params: DenierParams, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return DenierHandler(params)

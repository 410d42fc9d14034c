"""Table-driven tests of the expression language (mixer.expr), plus API-level checks."""

from __future__ import annotations

import ast
import datetime as dt
import ipaddress
import pathlib
import pickle
import types
from dataclasses import FrozenInstanceError, dataclass
from typing import Any

import pytest

import mixer.expr as expr_module
from mixer.attributes import ValueType, default_manifest
from mixer.expr import EvaluationError, Expression, ExpressionError, compile_expression

S, I, D, B = ValueType.STRING, ValueType.INT64, ValueType.DOUBLE, ValueType.BOOL
T, DUR, IP, MAP = ValueType.TIMESTAMP, ValueType.DURATION, ValueType.IP_ADDRESS, ValueType.STRING_MAP
DNS, EMAIL, URI = ValueType.DNS_NAME, ValueType.EMAIL_ADDRESS, ValueType.URI

MANIFEST = {
    **default_manifest(),
    "plain": S,
    "test.double": D,
    "test.dns": DNS,
    "test.email": EMAIL,
    "test.uri": URI,
    "test.bytes": ValueType.BYTES,
}

UTC = dt.timezone.utc
REQUEST_TIME = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

# The bag most cases evaluate against. Absent on purpose: request.referer, api.protocol,
# response.headers, response.grpc_message, response.size, origin.ip, check.cache_hit.
BAG: dict[str, Any] = {
    "request.size": 1234,
    "request.path": "/api/v1",
    "request.host": "www.example.com",
    "request.method": "GET",
    "request.time": REQUEST_TIME,
    "request.headers": {"x-user": "ann", "x-other": "bob", "/api/v1": "by-path"},
    "response.duration": dt.timedelta(milliseconds=250),
    "response.code": 200,
    "source.workload.name": "productpage-v1",
    "source.workload.namespace": "default",
    "source.ip": ipaddress.ip_address("10.0.0.1"),
    "source.labels": {"app": "productpage", "glob": "product*", "regex": "^/a", "badre": "("},
    "destination.service.host": "reviews.default.svc.cluster.local",
    "context.protocol": "http",
    "connection.mtls": True,
    "connection.received.bytes_total": 4096,
    "plain": "flat",
    "test.double": 2.5,
    "test.dns": "reviews.default.svc",
    "test.email": "ann@example.com",
    "test.uri": "http://istio.io/docs",
}


@dataclass(frozen=True)
class CompileFails:
    """Expected ExpressionError: a fragment of its message and its 0-based position."""

    message: str
    position: int


@dataclass(frozen=True)
class EvalFails:
    """Expected EvaluationError, with a fragment of its message."""

    message: str



def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms(n: float) -> dt.timedelta:
    return dt.timedelta(milliseconds=n)


# (expression, bag, expected static type (None for compile errors), expected value or error)
CASES: list[tuple[str, dict[str, Any], ValueType | None, Any]] = [
    # -- literals ------------------------------------------------------------------------------
    ('"hello"', BAG, S, "hello"),
    ("'single quoted'", BAG, S, "single quoted"),
    ("`raw\\d+`", BAG, S, "raw\\d+"),
    (r'"q\"uote\n\t\\"', BAG, S, 'q"uote\n\t\\'),
    (r'"\x41\u00e9\U0001F600\101"', BAG, S, "Aé😀A"),
    ('""', BAG, S, ""),
    ("42", BAG, I, 42),
    ("007", BAG, I, 7),
    ("-7", BAG, I, -7),
    ("9223372036854775807", BAG, I, 2**63 - 1),
    ("-9223372036854775808", BAG, I, -(2**63)),
    ("1.5", BAG, D, 1.5),
    (".5", BAG, D, 0.5),
    ("1e3", BAG, D, 1000.0),
    ("-2.5e-1", BAG, D, -0.25),
    ("true", BAG, B, True),
    ("false", BAG, B, False),
    ("TRUE", BAG, B, True),
    ("(((42)))", BAG, I, 42),
    # -- attributes ----------------------------------------------------------------------------
    ("request.size", BAG, I, 1234),
    ("source.workload.name", BAG, S, "productpage-v1"),
    ("connection.received.bytes_total", BAG, I, 4096),
    ("source.ip", BAG, IP, ipaddress.ip_address("10.0.0.1")),
    ("request.time", BAG, T, REQUEST_TIME),
    ("response.duration", BAG, DUR, ms(250)),
    ("connection.mtls", BAG, B, True),
    ("source.labels", {"source.labels": {"a": "b"}}, MAP, {"a": "b"}),
    ("plain", BAG, S, "flat"),
    ("test.double", BAG, D, 2.5),
    ("  request.method  ", BAG, S, "GET"),
    # -- map index -----------------------------------------------------------------------------
    ('request.headers["x-user"]', BAG, S, "ann"),
    ("request.headers['x-user']", BAG, S, "ann"),
    ('source.labels["app"]', BAG, S, "productpage"),
    ("request.headers[request.path]", BAG, S, "by-path"),
    ('(request.headers)["x-other"]', BAG, S, "bob"),
    ('request.headers["x-" + "user"]', BAG, S, "ann"),
    # Mixer's runtime: a missing key outside '|' reads as "" (the map itself must be present).
    ('request.headers["missing"]', BAG, S, ""),
    ('request.headers["missing"]', {}, S, EvalFails("attribute 'request.headers' is absent")),
    ('response.headers["x"]', BAG, S, EvalFails("attribute 'response.headers' is absent")),
    ("request.headers[request.referer]", BAG, S, EvalFails("attribute 'request.referer' is absent")),
    ('emptyStringMap()["k"] | "none"', BAG, S, "none"),
    # -- default operator | ---------------------------------------------------------------------
    ("request.size | 0", BAG, I, 1234),
    ("request.size | 0", {}, I, 0),
    ('request.referer | "none"', BAG, S, "none"),
    ('source.labels["app"] | "unknown"', BAG, S, "productpage"),
    ('source.labels["version"] | "unknown"', BAG, S, "unknown"),
    ('source.labels["version"] | "unknown"', {}, S, "unknown"),
    ('response.headers["x"] | "none"', BAG, S, "none"),
    ('api.protocol | context.protocol | "unknown"', BAG, S, "http"),
    ('api.protocol | request.referer | "unknown"', BAG, S, "unknown"),
    ('api.protocol | (request.referer | "grouped")', BAG, S, "grouped"),
    ('request.headers["x-nope"] | request.headers["x-other"] | "anon"', BAG, S, "bob"),
    ('response.duration | "0ms"', BAG, DUR, ms(250)),
    ('response.duration | "0ms"', {}, DUR, dt.timedelta(0)),
    ('connection.duration | "1m30s"', {}, DUR, dt.timedelta(seconds=90)),
    ('request.time | "2015-01-02T15:04:35Z"', {}, T, ts("2015-01-02T15:04:35Z")),
    ('origin.ip | "0.0.0.0"', BAG, IP, ipaddress.ip_address("0.0.0.0")),
    ('origin.ip | ip("127.0.0.1")', BAG, IP, ipaddress.ip_address("127.0.0.1")),
    ('"0ms" | "1s" | response.duration', BAG, DUR, dt.timedelta(0)),
    ("request.referer | request.host", BAG, S, "www.example.com"),
    ("request.referer | response.grpc_message", BAG, S, EvalFails("attribute 'response.grpc_message' is absent")),
    ('test.dns | "fallback"', {}, DNS, "fallback"),
    ("request.referer | test.dns", BAG, S, "reviews.default.svc"),
    ("test.double | 0", {}, None, CompileFails("INT64 where DOUBLE is expected", 14)),
    ("test.double | 0.0", {}, D, 0.0),
    ("connection.mtls | false", {}, B, False),
    # '|' tests only the attribute or lookup directly under it; deeper absence is an error.
    ('toLower(request.referer) | "absent-inside"', BAG, S, EvalFails("attribute 'request.referer' is absent")),
    ('(request.referer == "a") | true', BAG, B, EvalFails("attribute 'request.referer' is absent")),
    ('emptyStringMap() | source.labels', BAG, MAP, {}),
    ('conditional(connection.mtls, request.referer, "x") | "fallback"', BAG, S,
     EvalFails("attribute 'request.referer' is absent")),
    # Go precedence: | binds like +, tighter than comparisons.
    ("request.size | 0 + 1", {}, I, 1),
    ('request.referer | "x" == "x"', BAG, B, True),
    ('"pre-" + request.referer | "whole-default"', BAG, S, EvalFails("attribute 'request.referer' is absent")),
    ('"pre-" + (request.referer | "none")', BAG, S, "pre-none"),
    ('destination.service.host | conditional((destination.service.name | "unknown") == "unknown", "unknown", request.host)',
     {"request.host": "h", "destination.service.name": "reviews"}, S, "h"),
    # -- logical operators ------------------------------------------------------------------
    ("true && false", BAG, B, False),
    ("true || false", BAG, B, True),
    ("connection.mtls && request.size > 100", BAG, B, True),
    ('false && request.referer == "x"', BAG, B, False),
    ('true || request.referer == "x"', BAG, B, True),
    ('connection.mtls || request.referer == "x"', BAG, B, True),
    ('request.size > 10000 || request.path == "/api/v1"', BAG, B, True),
    ('request.referer == "x" && true', BAG, B, EvalFails("attribute 'request.referer' is absent")),
    ("!connection.mtls", BAG, B, False),
    ("!(request.size == 1234)", BAG, B, False),
    # "attribute | constant" under == != and ! (read by the operator's closure itself)
    ('(request.method | "") == "GET"', BAG, B, True),
    ('(request.method | "") != "GET"', {}, B, True),
    ('(request.referer | "none") == "none"', BAG, B, True),
    ('"GET" == (request.method | "")', BAG, B, True),
    ("!(connection.mtls | false)", {}, B, True),
    ("!(connection.mtls | true)", {"connection.mtls": False}, B, True),
    ("!(connection.mtls | false)", {"connection.mtls": True}, B, False),
    ("!true", BAG, B, False),
    ("!!connection.mtls", BAG, B, True),
    ("true || false && false", BAG, B, True),
    ("(true || false) && false", BAG, B, False),
    ('(context.protocol == "http" || context.protocol == "grpc") && (match((request.useragent | "-"), "kube-probe*") == false)',
     BAG, B, True),
    # -- equality ---------------------------------------------------------------------------
    ("request.size == 1234", BAG, B, True),
    ("request.size != 1234", BAG, B, False),
    ("request.size == 1234.0", BAG, None, CompileFails("cannot compare INT64 with DOUBLE", 13)),
    ("test.double == 2", BAG, None, CompileFails("INT64 and DOUBLE do not mix", 12)),
    ("test.double != 2.0", BAG, B, True),
    ('request.method == "GET"', BAG, B, True),
    ('"GET" == request.method', BAG, B, True),
    ('request.method != "POST"', BAG, B, True),
    ("request.method == request.method", BAG, B, True),
    ('"a" == "a"', BAG, B, True),
    ('source.ip == ip("10.0.0.1")', BAG, B, True),
    ('source.ip == "10.0.0.1"', BAG, B, True),
    ('source.ip != "10.0.0.2"', BAG, B, True),
    ('source.ip == ip("::ffff:10.0.0.1")', BAG, B, True),
    ("source.labels == emptyStringMap()", BAG, B, False),
    ("emptyStringMap() == emptyStringMap()", BAG, B, True),
    ('request.time == timestamp("2024-05-01T12:00:00Z")', BAG, B, True),
    ('request.time == "2024-05-01T14:00:00+02:00"', BAG, B, True),
    ('response.duration == "250ms"', BAG, B, True),
    ('"0.25s" == response.duration', BAG, B, True),
    ("connection.mtls == true", BAG, B, True),
    ('dnsName("WWW.Istio.io.") == dnsName("www.istio.io")', BAG, B, True),
    ('test.dns == "Reviews.Default.svc"', BAG, None, CompileFails("convert the STRING with dnsName(...)", 9)),
    ('test.dns == dnsName("Reviews.Default.svc")', BAG, B, True),
    ('email("Ann@Example.COM") == email("Ann@example.com")', BAG, B, True),
    ('email("ANN@example.com") == email("ann@example.com")', BAG, B, False),
    ('uri("HTTP://Istio.IO/docs") == test.uri', BAG, B, True),
    ('uri("http://istio.io/Docs") == test.uri', BAG, B, False),
    ('uri("http://istio.io:8080/docs") == test.uri', BAG, B, False),
    ("request.host == test.dns", BAG, None, CompileFails("cannot compare STRING with DNS_NAME", 13)),
    ("test.bytes == test.bytes", {"test.bytes": b"\x00"}, B, True),
    # -- ordering ---------------------------------------------------------------------------
    ("request.size > 1000", BAG, B, True),
    ("request.size >= 1234", BAG, B, True),
    ("request.size < 1234", BAG, B, False),
    ("request.size <= 1234", BAG, B, True),
    ("1000 < request.size", BAG, B, True),
    ("test.double < 3.0", BAG, B, True),
    ("1 < 1.5", BAG, None, CompileFails("not defined for INT64 and DOUBLE", 2)),
    ('response.duration > "100ms"', BAG, B, True),
    ('response.duration <= "0.25s"', BAG, B, True),
    ('request.time < "2030-01-01T00:00:00Z"', BAG, B, True),
    ('request.time > timestamp("2024-05-01T12:00:01Z")', BAG, B, False),
    ('"abc" < "abd"', BAG, B, True),
    ('request.method >= "GET"', BAG, B, True),
    ("request.size > response.size", BAG, B, EvalFails("attribute 'response.size' is absent")),
    ("request.size > 1000 == true", BAG, B, True),
    # -- + and unary - -------------------------------------------------------------------------
    ("1 + 2", BAG, I, 3),
    ("request.size + 1", BAG, I, 1235),
    ("test.double + 1.0", BAG, D, 3.5),
    ("test.double + 1", BAG, None, CompileFails("INT64 and DOUBLE do not mix", 12)),
    ("1.5 + 1.5", BAG, D, 3.0),
    ("request.size + test.double", BAG, None, CompileFails("not defined for INT64 and DOUBLE", 13)),
    ("request.host + request.path", BAG, S, "www.example.com/api/v1"),
    ('"a" + "b" + "c"', BAG, S, "abc"),
    ('source.workload.name + "." + source.workload.namespace', BAG, S, "productpage-v1.default"),
    ('test.dns + ":80"', BAG, S, "reviews.default.svc:80"),
    ("request.size + 9223372036854775807", BAG, I, EvalFails("INT64 overflow")),
    ("-request.size", BAG, I, -1234),
    ("-test.double", BAG, D, -2.5),
    ("-response.duration", BAG, DUR, ms(-250)),
    ("- -5", BAG, I, 5),
    ("-(1 + 2)", BAG, I, -3),
    ("-request.size + 1", BAG, I, -1233),
    # -- functions ------------------------------------------------------------------------------
    ('match(request.path, "/api*")', BAG, B, True),
    ('match(request.path, "*/v1")', BAG, B, True),
    ('match(destination.service.host, "*.svc.cluster.local")', BAG, B, True),
    ('match("abc", "abc")', BAG, B, True),
    ('match("abc", "ab")', BAG, B, False),
    ('match(request.path, "/v1*")', BAG, B, False),
    ('match(source.workload.name, source.labels["glob"])', BAG, B, True),
    ('"svc".matches(destination.service.host)', BAG, B, True),
    ('"^svc".matches(destination.service.host)', BAG, B, False),
    ('"^reviews\\\\.default".matches(destination.service.host)', BAG, B, True),
    ("`^reviews\\.default\\.svc\\..*local$`.matches(destination.service.host)", BAG, B, True),
    ('source.labels["regex"].matches(request.path)', BAG, B, True),
    # Mixer's receiver order: the ATTRIBUTE is the pattern here, "^/api" the text searched.
    ('request.path.matches("^/api")', BAG, B, False),
    ('source.labels["badre"].matches(request.path)', BAG, B, EvalFails("invalid regular expression '('")),
    ('request.path.startsWith("/api")', BAG, B, True),
    ('request.path.startsWith("/v1")', BAG, B, False),
    ('request.path.endsWith("v1")', BAG, B, True),
    ('source.labels["app"].startsWith("prod")', BAG, B, True),
    ('"GET /".startsWith(request.method)', BAG, B, True),
    ('(request.host + request.path).endsWith("/v1")', BAG, B, True),
    ('toLower(request.method).endsWith("et")', BAG, B, True),
    ('ip("10.0.0.1")', BAG, IP, ipaddress.ip_address("10.0.0.1")),
    ('ip("::1")', BAG, IP, ipaddress.ip_address("::1")),
    ("ip(request.host)", BAG, IP, EvalFails("could not convert 'www.example.com' to IP_ADDRESS")),
    ('timestamp("2015-01-02T15:04:35Z")', BAG, T, ts("2015-01-02T15:04:35Z")),
    ('timestamp("2015-01-02T15:04:35.5-07:00")', BAG, T, ts("2015-01-02T22:04:35.5Z")),
    ("timestamp(request.referer)", BAG, T, EvalFails("attribute 'request.referer' is absent")),
    ('email("awesome@istio.io")', BAG, EMAIL, "awesome@istio.io"),
    ('dnsName("www.istio.io")', BAG, DNS, "www.istio.io"),
    ('uri("http://istio.io")', BAG, URI, "http://istio.io"),
    ('conditional(connection.mtls, "mutual_tls", "none")', BAG, S, "mutual_tls"),
    ('conditional(connection.mtls, "mutual_tls", "none")', {"connection.mtls": False}, S, "none"),
    ('conditional(true, "x", request.referer)', BAG, S, "x"),
    ('conditional(connection.mtls, "yes", request.referer)', BAG, S, "yes"),
    ('conditional(connection.mtls, request.referer, "no")', {"connection.mtls": False}, S, "no"),
    ('conditional(connection.mtls, request.referer, "no")', BAG, S, EvalFails("attribute 'request.referer' is absent")),
    ('conditional(connection.mtls, response.duration, "0s")', {"connection.mtls": False}, DUR, dt.timedelta(0)),
    ("conditional(request.size > 1000, 1, 2)", BAG, I, 1),
    ('conditional((context.reporter.kind | "inbound") == "outbound", "source", "destination")', BAG, S,
     "destination"),
    ('conditional(request.referer == "a", "b", "c")', BAG, S, EvalFails("attribute 'request.referer' is absent")),
    ('conditionalString(connection.mtls, "a", "b")', BAG, S, "a"),
    ("toLower(request.method)", BAG, S, "get"),
    ('toLower("ÀB")', BAG, S, "àb"),
    ("toLower(request.referer)", BAG, S, EvalFails("attribute 'request.referer' is absent")),
    ("size(request.path)", BAG, I, 7),
    ("size(source.labels)", BAG, I, 4),
    ('size("")', BAG, I, 0),
    ("size(emptyStringMap())", BAG, I, 0),
    ("emptyStringMap()", BAG, MAP, {}),
    # -- absent attributes ----------------------------------------------------------------------
    ("request.referer", BAG, S, EvalFails("attribute 'request.referer' is absent")),
    ('request.referer == "x"', BAG, B, EvalFails("attribute 'request.referer' is absent")),
    ("!check.cache_hit", BAG, B, EvalFails("attribute 'check.cache_hit' is absent")),
    ("request.size", {}, I, EvalFails("attribute 'request.size' is absent")),
    ("size(request.referer)", BAG, I, EvalFails("attribute 'request.referer' is absent")),
    ('request.referer.startsWith("x")', BAG, B, EvalFails("attribute 'request.referer' is absent")),
    ('"x".matches(request.referer)', BAG, B, EvalFails("attribute 'request.referer' is absent")),
    # -- type errors (compile time) ---------------------------------------------------------
    ('request.size | "x"', BAG, None, CompileFails("type mismatch in '|': STRING where INT64", 15)),
    ('"x" | request.size', BAG, None, CompileFails("type mismatch in '|'", 0)),
    ("request.size | 1.5", BAG, None, CompileFails("DOUBLE where INT64", 15)),
    ('request.size + "x"', BAG, None, CompileFails("operator '+' is not defined for INT64 and STRING", 13)),
    ("connection.mtls + true", BAG, None, CompileFails("operator '+' is not defined", 16)),
    ('request.size == "1234"', BAG, None, CompileFails("cannot compare INT64 with STRING", 13)),
    ("connection.mtls > true", BAG, None, CompileFails("operator '>' is not defined for BOOL and BOOL", 16)),
    ("source.labels < source.labels", BAG, None, CompileFails("not defined for STRING_MAP", 14)),
    ("request.size && true", BAG, None, CompileFails("operator '&&' needs BOOL operands, not INT64", 0)),
    ("true || request.path", BAG, None, CompileFails("needs BOOL operands, not STRING", 8)),
    ("!request.size", BAG, None, CompileFails("operator '!' needs a BOOL, not INT64", 0)),
    ("-request.path", BAG, None, CompileFails("unary '-' needs INT64, DOUBLE or DURATION", 0)),
    ('request.path["x"]', BAG, None, CompileFails("cannot index a value of type STRING", 12)),
    ("source.labels[1]", BAG, None, CompileFails("map key must be a STRING, not INT64", 14)),
    ('response.duration | "soon"', BAG, None, CompileFails("'soon' is not a valid DURATION literal", 20)),
    ('request.time | "yesterday"', BAG, None, CompileFails("not a valid TIMESTAMP literal", 15)),
    ('source.ip | "not-an-ip"', BAG, None, CompileFails("not a valid IP_ADDRESS literal", 12)),
    ('response.duration > "fast"', BAG, None, CompileFails("not a valid DURATION literal", 20)),
    ('source.ip == "10.0.0.300"', BAG, None, CompileFails("not a valid IP_ADDRESS literal", 13)),
    ("response.duration | 0", BAG, None, CompileFails("INT64 where DURATION", 20)),
    ("toLower(request.size)", BAG, None, CompileFails("toLower() expects STRING here, got INT64", 8)),
    ('toLower("a", "b")', BAG, None, CompileFails("toLower() takes 1 argument, got 2", 0)),
    ("emptyStringMap(1)", BAG, None, CompileFails("emptyStringMap() takes 0 arguments, got 1", 0)),
    ("match(request.path)", BAG, None, CompileFails("match() takes 2 arguments, got 1", 0)),
    ('request.path.startsWith("a", "b")', BAG, None, CompileFails("startsWith() takes 1 argument, got 2", 13)),
    ("request.path.toLower()", BAG, None, CompileFails("'toLower' is a function, not a method", 13)),
    ('request.size.startsWith("1")', BAG, None, CompileFails("startsWith() expects STRING here, got INT64", 0)),
    ('matches("a.*", request.path)', BAG, None, CompileFails("'matches' is a method", 0)),
    ('startsWith(request.path, "/")', BAG, None, CompileFails("'startsWith' is a method", 0)),
    ("size(request.size)", BAG, None, CompileFails("size() expects STRING or STRING_MAP here, got INT64", 5)),
    ("ip(1)", BAG, None, CompileFails("ip() expects STRING here, got INT64", 3)),
    ('conditional(1, "a", "b")', BAG, None, CompileFails("conditional() expects BOOL here, got INT64", 12)),
    ('conditional(true, "a", 1)', BAG, None, CompileFails("type mismatch in conditional() branches", 23)),
    ("conditionalString(true, 1, 2)", BAG, None, CompileFails("expects STRING here, got INT64", 24)),
    ("foo(1)", BAG, None, CompileFails("unknown function 'foo'", 0)),
    ("request.path.frobnicate()", BAG, None, CompileFails("unknown function 'frobnicate'", 13)),
    ("request.sise", BAG, None, CompileFails("unknown attribute 'request.sise'", 0)),
    ("1 + request.sise", BAG, None, CompileFails("unknown attribute 'request.sise'", 4)),
    ("source.labels.app", BAG, None, CompileFails("write source.labels[\"app\"]", 0)),
    ("request.size.bytes", BAG, None, CompileFails("'request.size' is an attribute of type INT64", 0)),
    ('"(".matches(request.path)', BAG, None, CompileFails("invalid regular expression '('", 0)),
    ('("a" + "[").matches(request.path)', BAG, None, CompileFails("invalid regular expression 'a['", 5)),
    ('ip("bad")', BAG, None, CompileFails("ip(): could not convert 'bad' to IP_ADDRESS", 0)),
    ('timestamp("2015-01-02")', BAG, None, CompileFails("could not convert '2015-01-02' to TIMESTAMP", 0)),
    ('email("not an email")', BAG, None, CompileFails("could not convert 'not an email' to EMAIL_ADDRESS", 0)),
    ('email("a@bad_domain")', BAG, None, CompileFails("invalid label 'bad_domain'", 0)),
    ('dnsName("bad_name.io")', BAG, None, CompileFails("invalid label 'bad_name'", 0)),
    ('dnsName("-x.io")', BAG, None, CompileFails("to DNS_NAME", 0)),
    ('uri("")', BAG, None, CompileFails("could not convert '' to URI: empty string", 0)),
    ('uri("http://x/%zz")', BAG, None, CompileFails("invalid percent escape", 0)),
    ("9223372036854775807 + 1", BAG, None, CompileFails("INT64 overflow", 20)),
    # -- parse errors ---------------------------------------------------------------------------
    ("", BAG, None, CompileFails("empty expression", 0)),
    ("   ", BAG, None, CompileFails("empty expression", 0)),
    ("request.size +", BAG, None, CompileFails("unexpected end of expression", 14)),
    ("(request.size", BAG, None, CompileFails("expected ')', found end of expression", 13)),
    ("request.size)", BAG, None, CompileFails("unexpected ')'", 12)),
    ('"abc', BAG, None, CompileFails("unterminated string literal", 0)),
    ("request.size == 'x", BAG, None, CompileFails("unterminated string literal", 16)),
    ("request.size = 1", BAG, None, CompileFails("operator '=' is not supported (use '==' to compare)", 13)),
    ("request.size * 2", BAG, None, CompileFails("operator '*' is not supported", 13)),
    ("request.size - 1", BAG, None, CompileFails("binary '-' is not supported", 13)),
    ("a & b", BAG, None, CompileFails("operator '&' is not supported", 2)),
    (r'"a\qb"', BAG, None, CompileFails("unknown escape sequence '\\q'", 2)),
    (r'"\xZZ"', BAG, None, CompileFails("invalid escape sequence", 1)),
    ("0x10", BAG, None, CompileFails("invalid number literal", 0)),
    ("12abc", BAG, None, CompileFails("invalid number literal", 0)),
    ("99999999999999999999", BAG, None, CompileFails("out of INT64 range", 0)),
    ("-9223372036854775809", BAG, None, CompileFails("out of INT64 range", 0)),
    ("1e999", BAG, None, CompileFails("out of range", 0)),
    ('request.headers["a"].b', BAG, None, CompileFails("field access '.b' is not supported", 21)),
    ('request.headers["a"', BAG, None, CompileFails("expected ']'", 19)),
    ("toLower(,)", BAG, None, CompileFails("unexpected ','", 8)),
    ("match(request.path \"x\")", BAG, None, CompileFails("expected ',' or ')'", 19)),
    ("request.size # comment", BAG, None, CompileFails("unexpected character '#'", 13)),
    ("1 2", BAG, None, CompileFails("unexpected literal 2", 2)),
    ("request.size request.path", BAG, None, CompileFails("unexpected identifier 'request'", 13)),
    ("request.", BAG, None, CompileFails("expected a method name after '.'", 8)),
    ("()", BAG, None, CompileFails("unexpected ')'", 1)),
    ("|| true", BAG, None, CompileFails("unexpected '||'", 0)),
]


def _case_id(case: tuple[str, dict[str, Any], ValueType | None, Any]) -> str:
    text, bag, _, expected = case
    suffix = "" if bag is BAG else "-custombag"
    kind = type(expected).__name__ if isinstance(expected, (CompileFails, EvalFails)) else "ok"
    return f"{text or '<empty>'}{suffix}-{kind}"


def test_table_is_large_and_covers_every_function_and_operator() -> None:
    assert len(CASES) >= 150
    texts = " ".join(case[0] for case in CASES)
    for name in ("match(", ".matches(", ".startsWith(", ".endsWith(", "ip(", "timestamp(", "email(",
                 "dnsName(", "uri(", "conditional(", "conditionalString(", "toLower(", "size(",
                 "emptyStringMap("):
        assert name in texts, name
    for op in (" | ", "||", "&&", "==", "!=", " < ", "<=", " > ", ">=", " + ", "!", "-", "["):
        assert op in texts, op


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_expression_table(case: tuple[str, dict[str, Any], ValueType | None, Any]) -> None:
    text, bag, expected_type, expected = case
    if isinstance(expected, CompileFails):
        with pytest.raises(ExpressionError) as info:
            compile_expression(text, MANIFEST)
        err = info.value
        assert expected.message in err.message
        assert err.position == expected.position, err
        assert err.expression == text
        return
    compiled = compile_expression(text, MANIFEST)
    assert compiled.type is expected_type
    if isinstance(expected, EvalFails):
        with pytest.raises(EvaluationError) as eval_info:
            compiled.evaluate(bag)
        assert expected.message in str(eval_info.value)
        return
    value = compiled.evaluate(bag)
    assert value == expected
    # bool is an int and 1 == 1.0: insist on the exact Python representation too.
    assert type(value) is type(expected), (value, expected)


# -- non-table tests ---------------------------------------------------------------------------


def test_public_api_surface() -> None:
    assert sorted(expr_module.__all__) == sorted(
        ["AttributeEquality", "Conjunct", "compile_expression", "Expression", "ExpressionError",
         "EvaluationError", "Reference", "UnknownValue"])
    assert issubclass(ExpressionError, ValueError)
    assert not issubclass(EvaluationError, ExpressionError)


def test_references_name_map_entries_read_at_constant_keys() -> None:
    manifest = default_manifest()
    refs = compile_expression('request.headers["x-user"] | source.workload.name', manifest).references
    assert refs == {("request.headers", "x-user"), "source.workload.name"}
    # Read whole (size) or at a computed key: the whole map is referenced.
    assert compile_expression("size(request.headers) > 2", manifest).references == {"request.headers"}
    computed = compile_expression("request.headers[source.workload.name]", manifest).references
    assert computed == {"request.headers", "source.workload.name"}
    assert compile_expression('"x" == "y"', manifest).references == frozenset()


def test_expression_metadata_and_immutability() -> None:
    compiled = compile_expression('request.headers["x-user"] | source.workload.name | "anon"', MANIFEST)
    assert isinstance(compiled, Expression)
    assert compiled.text == 'request.headers["x-user"] | source.workload.name | "anon"'
    assert compiled.attributes == frozenset({"request.headers", "source.workload.name"})
    assert compiled.constant is False
    with pytest.raises(FrozenInstanceError):
        compiled.text = "other"  # type: ignore[misc]
    folded = compile_expression('toLower("A" + "B") + "c"', MANIFEST)
    assert folded.constant is True and folded.attributes == frozenset()
    assert folded.evaluate({}) == "abc" and folded.evaluate(BAG) == "abc"


def test_expression_error_text_and_fields() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("request.sise == 1", MANIFEST)
    err = info.value
    assert err.message == "unknown attribute 'request.sise'"
    assert err.position == 0
    assert str(err) == "unknown attribute 'request.sise' (at column 1 of 'request.sise == 1')"
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.message, clone.expression, clone.position) == (err.message, err.expression, err.position)


def test_absence_is_per_evaluation_and_not_sticky() -> None:
    compiled = compile_expression("request.size + 1", MANIFEST)
    with pytest.raises(EvaluationError, match="attribute 'request.size' is absent"):
        compiled.evaluate({})
    assert compiled.evaluate({"request.size": 1}) == 2
    with pytest.raises(EvaluationError):
        compiled.evaluate({"response.size": 1})
    assert compiled.evaluate({"request.size": 41}) == 42


@pytest.mark.parametrize(
    "text, bag",
    [
        ('request.path.startsWith("/")', {"request.path": 5}),
        ("request.size + 1", {"request.size": "1"}),
        ('request.headers["a"] | "x"', {"request.headers": "not a map"}),
        ('request.time < "2030-01-01T00:00:00Z"', {"request.time": "2020"}),
        ("toLower(request.method)", {"request.method": None}),
    ],
)
def test_badly_typed_bags_raise_evaluation_error_only(text: str, bag: dict[str, Any]) -> None:
    compiled = compile_expression(text, MANIFEST)
    with pytest.raises(EvaluationError):
        compiled.evaluate(bag)


def test_map_results_are_not_shared_between_evaluations() -> None:
    compiled = compile_expression("emptyStringMap()", MANIFEST)
    first = compiled.evaluate({})
    first["polluted"] = "yes"
    assert compiled.evaluate({}) == {}


def test_evaluation_accepts_any_mapping_and_leaves_the_bag_alone() -> None:
    bag = {"request.size": 10, "request.headers": {"a": "b"}}
    snapshot = {"request.size": 10, "request.headers": {"a": "b"}}
    proxy = types.MappingProxyType(bag)
    compiled = compile_expression('request.headers["a"] + request.headers["z"] | "d"', MANIFEST)
    assert compiled.evaluate(proxy) == "b"  # the missing key reads as ""; '|' sees the sum
    assert compile_expression("request.size | 0", MANIFEST).evaluate(proxy) == 10
    assert bag == snapshot


def test_manifest_controls_attribute_types() -> None:
    manifest = {"custom.value": ValueType.DOUBLE, "custom": ValueType.STRING}
    assert compile_expression("custom.value | 1.0", manifest).type is ValueType.DOUBLE
    assert compile_expression("custom", manifest).evaluate({"custom": "x"}) == "x"
    with pytest.raises(ExpressionError, match="unknown attribute 'request.size'"):
        compile_expression("request.size", manifest)


def test_deep_nesting_is_a_compile_error_not_a_crash() -> None:
    text = "(" * 50_000 + "1" + ")" * 50_000
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression(text, MANIFEST)


@pytest.mark.parametrize(
    ("text", "bag", "expected"),
    [
        (" && ".join(f'request.path != "/{i}"' for i in range(500)), {"request.path": "/x"}, True),
        (" || ".join(f"response.code == {i}" for i in range(500)), {"response.code": 499}, True),
        (" + ".join("request.size" for _ in range(500)), {"request.size": 2}, 1000),
        (" + ".join(f'"{i % 10}"' for i in range(300)) + ' + request.path', {"request.path": "!"},
         "".join(str(i % 10) for i in range(300)) + "!"),
        ("(" * 500 + "response.code" + ")" * 500 + " == 200", {"response.code": 200}, True),
        ("(" * 300 + " && ".join(f"(response.code != {i})" for i in range(300)) + ")" * 300,
         {"response.code": 500}, True),
    ],
    ids=["and-500", "or-500", "plus-500", "concat-300", "parens-500", "generated-mix"],
)
def test_long_generated_expressions_compile_and_evaluate(text: str, bag: dict[str, Any], expected: Any) -> None:
    assert compile_expression(text, MANIFEST).evaluate(bag) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('response.duration | ""', "not a valid DURATION literal"),
        ('response.duration | "   "', "not a valid DURATION literal"),
        ('response.duration | "-"', "not a valid DURATION literal"),
        ('response.duration | "99999999999999h"', "not a valid DURATION literal"),
        ("1" * 5000, "out of INT64 range"),
        ("9223372036854775808", "out of INT64 range"),
        ('request.time == "2020-01-01"', "not a valid TIMESTAMP literal"),
        ('request.time == "10000-01-01T00:00:00Z"', "not a valid TIMESTAMP literal"),
        ('request.time == "9999-12-31T23:59:59-05:00"', "not a valid TIMESTAMP literal"),
    ],
)
def test_bad_literals_are_typed_errors_with_a_column(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message) as caught:
        compile_expression(text, MANIFEST)
    assert len(str(caught.value)) < 400  # a huge literal is not echoed whole


def test_istio_default_telemetry_expressions_compile_and_evaluate() -> None:
    # Expressions as written in Istio 1.4's telemetry configuration.
    texts = {
        'conditional((context.reporter.kind | "inbound") == "outbound", "source", "destination")': "destination",
        'source.workload.name | "unknown"': "productpage-v1",
        'destination.workload.name | "unknown"': "unknown",
        'source.labels["version"] | "unknown"': "unknown",
        'api.protocol | context.protocol | "unknown"': "http",
        "response.code | 200": 200,
        'response.grpc_status | ""': "",
        'context.proxy_error_code | "-"': "-",
        'conditional((context.reporter.kind | "inbound") == "outbound", "unknown", '
        'conditional(connection.mtls | false, "mutual_tls", "none"))': "mutual_tls",
        'response.duration | "0ms"': ms(250),
        "request.size | 0": 1234,
        'context.protocol == "tcp" && ((connection.event | "na") == "open")': False,
    }
    for text, expected in texts.items():
        assert compile_expression(text, MANIFEST).evaluate(BAG) == expected, text


def test_engine_never_uses_eval_exec_or_compile() -> None:
    package = pathlib.Path(expr_module.__file__).parent
    forbidden = {"eval", "exec", "compile", "__import__"}
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in forbidden, f"{source.name}:{node.lineno} calls {node.func.id}()"


def test_matches_runs_in_linear_time_on_re2() -> None:
    # 2^40 paths for a backtracking engine; RE2 answers at once (a hang here would time out).
    assert compile_expression('"^(a+)+$".matches(request.path)', MANIFEST).evaluate(
        {"request.path": "a" * 40 + "!"}) is False
    dynamic = compile_expression("source.labels[\"regex\"].matches(request.path)", MANIFEST)
    assert dynamic.evaluate({"source.labels": {"regex": "^(a+)+$"}, "request.path": "a" * 40 + "!"}) is False
    with pytest.raises(ExpressionError, match="invalid regular expression '\\(a\\)\\\\\\\\1'"):
        compile_expression('"(a)\\\\1".matches(request.path)', MANIFEST)

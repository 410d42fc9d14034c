"""Built-in functions of the expression language (Mixer's externs) and type-aware equality.

Signatures follow Mixer (mixer/pkg/lang/externs.go, ast/func.go). Notable Mixer semantics:

* ``matches`` is a METHOD whose receiver is the regular expression and whose argument is the
  string tested: ``"svc.*".matches(destination.service)``. Like Go's ``regexp.MatchString`` it
  is an unanchored search (use ``^...$`` to anchor). Patterns run on RE2 (``mixer.regex``), as
  Go's regexp did: linear time, no backreferences or lookaround.
* ``match(str, pattern)`` is a glob: ``"abc*"`` prefix, ``"*abc"`` suffix, otherwise equality.
* ``startsWith``/``endsWith`` are methods on the string: ``request.path.startsWith("/api")``.
* Equality of DNS_NAME, EMAIL_ADDRESS and URI values is normalising (case-insensitive host
  names, trailing dot ignored, an e-mail local part compared unquoted: ``"istio"@istio.io``
  equals ``istio@istio.io``), as Mixer's ``dnsName_equal``/``email_equal``/``uri_equal``.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import EvaluationError
from ..attributes import ValueType, parse_duration, parse_timestamp
from ..regex import RegexError, compile_regex

# Parameter kinds understood by the checker.
STRING = "string"    # STRING or any string-like type (DNS_NAME, EMAIL_ADDRESS, URI)
BOOL = "bool"
ANY = "any"          # conditional branches: any type, unified across the branches
SIZED = "sized"      # STRING-like or STRING_MAP


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    method: bool                      # called as target.name(args); target is params[0]
    params: tuple[str, ...]           # including the receiver for methods
    result: ValueType | None          # None: the unified type of the ANY parameters
    impl: Callable[..., Any] | None   # None: compiled specially (lazy or polymorphic)
    usage: str                        # shown in error messages


# -- conversions -----------------------------------------------------------------------------

def to_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise EvaluationError(f"ip(): could not convert {text!r} to IP_ADDRESS") from None


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def to_timestamp(text: str) -> dt.datetime:
    # Go's time.RFC3339 layout needs date, time and zone; fromisoformat alone is laxer.
    if _RFC3339.fullmatch(text):
        try:
            return parse_timestamp(text)
        except ValueError:
            pass
    raise EvaluationError(f"timestamp(): could not convert {text!r} to TIMESTAMP; "
                          "expected RFC 3339 such as '2015-01-02T15:04:35Z'")


_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _dns_error(text: str) -> str | None:
    """Why ``text`` is not a DNS name, or None when it is one."""
    name = text[:-1] if text.endswith(".") else text
    if not name:
        return "empty name"
    if len(name) > 253:
        return "longer than 253 characters"
    for label in name.split("."):
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return f"invalid label {label!r}"
        if not _DNS_LABEL.fullmatch(label):
            return f"invalid label {label!r}"
    return None


def to_dns_name(text: str) -> str:
    problem = _dns_error(text)
    if problem:
        raise EvaluationError(f"dnsName(): could not convert {text!r} to DNS_NAME: {problem}")
    return text


# RFC 5322 addr-spec, as Go's net/mail parsed it: a dot-atom or a quoted-string local part.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(rf'({_ATOM}(?:\.{_ATOM})*|"(?:[^"\\\r\n]|\\.)*")@([^@\s]+)')
_QUOTED_PAIR = re.compile(r"\\(.)")


def _email_parts(text: str) -> tuple[str, str] | None:
    """(local part with quoting removed, domain), or None when ``text`` is no address."""
    match = _EMAIL.fullmatch(text)
    if match is None:
        return None
    local = match.group(1)
    if local.startswith('"'):
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    return local, match.group(2)


def to_email(text: str) -> str:
    """The address unchanged (Mixer did not normalise it), once it parses as local@domain."""
    parts = _email_parts(text)
    problem = "expected local@domain without a display name" if parts is None else _dns_error(parts[1])
    if problem:
        raise EvaluationError(f"email(): could not convert {text!r} to EMAIL_ADDRESS: {problem}")
    return text


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def to_uri(text: str) -> str:
    problem = None
    if not text:
        problem = "empty string"
    elif any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        problem = "control character"
    elif text.startswith(":"):
        problem = "missing scheme"
    elif _BAD_ESCAPE.search(text):
        problem = "invalid percent escape"
    else:
        try:
            urllib.parse.urlsplit(text)
        except ValueError as exc:
            problem = str(exc)
    if problem:
        raise EvaluationError(f"uri(): could not convert {text!r} to URI: {problem}")
    return text


def literal_as(kind: ValueType, text: str) -> Any:
    """Reinterpret a string literal as a constant of ``kind`` ("0ms" as a DURATION, ...).

    Raises ValueError with a readable message when the text does not fit.
    """
    try:
        if kind is ValueType.DURATION:
            return parse_duration(text)
        if kind is ValueType.TIMESTAMP:
            return to_timestamp(text)
        if kind is ValueType.IP_ADDRESS:
            return to_ip(text)
    except (ValueError, EvaluationError):
        raise ValueError(f"{text!r} is not a valid {kind.value} literal") from None
    raise ValueError(f"a string literal cannot be used as {kind.value}")


LITERAL_CONVERTIBLE = frozenset({ValueType.DURATION, ValueType.TIMESTAMP, ValueType.IP_ADDRESS})


# -- string predicates -----------------------------------------------------------------------

def glob_match(text: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return text.endswith(pattern[1:])
    return text == pattern


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A one-argument predicate for a constant glob, deciding the kind once."""
    if pattern.endswith("*"):
        return functools.partial(_startswith, pattern[:-1])
    if pattern.startswith("*"):
        return functools.partial(_endswith, pattern[1:])
    return pattern.__eq__


def _startswith(prefix: str, text: str) -> bool:
    return text.startswith(prefix)


def _endswith(suffix: str, text: str) -> bool:
    return text.endswith(suffix)


def regex_matches(pattern: str, text: str) -> bool:
    """``pattern.matches(text)`` for a pattern computed per bag (constant ones compile at load)."""
    try:
        compiled = compile_regex(pattern)
    except RegexError as exc:
        raise EvaluationError(f"matches(): {exc}") from None
    return compiled.search(text) is not None


# -- equality --------------------------------------------------------------------------------

def _dns_key(name: str) -> str:
    return name[:-1].lower() if name.endswith(".") else name.lower()


def dns_equal(a: str, b: str) -> bool:
    return a == b or _dns_key(a) == _dns_key(b)


def email_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    parts_a, parts_b = _email_parts(a), _email_parts(b)
    if parts_a is None or parts_b is None:  # a bag value that never went through email()
        raise EvaluationError(f"cannot compare e-mail addresses {a!r} and {b!r}")
    return parts_a[0] == parts_b[0] and dns_equal(parts_a[1], parts_b[1])


def uri_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        ua, ub = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
        if ua.scheme.lower() != ub.scheme.lower():
            return False
        if ua.scheme.lower() in ("http", "https"):
            return (dns_equal(ua.hostname or "", ub.hostname or "") and ua.port == ub.port
                    and (ua.username, ua.password, ua.path, ua.query, ua.fragment)
                    == (ub.username, ub.password, ub.path, ub.query, ub.fragment))
        return ua._replace(scheme=ua.scheme.lower()) == ub._replace(scheme=ub.scheme.lower())
    except ValueError as exc:
        raise EvaluationError(f"cannot compare URIs {a!r} and {b!r}: {exc}") from None


def ip_equal(a: Any, b: Any) -> bool:
    # Go's net.IP.Equal treats 10.0.0.1 and ::ffff:10.0.0.1 as the same address.
    if a == b:
        return True
    return bool((getattr(a, "ipv4_mapped", None) or a) == (getattr(b, "ipv4_mapped", None) or b))


# Equality function by static type; types absent here use Python ==.
EQUALITY: dict[ValueType, Callable[[Any, Any], bool]] = {
    ValueType.DNS_NAME: dns_equal,
    ValueType.EMAIL_ADDRESS: email_equal,
    ValueType.URI: uri_equal,
    ValueType.IP_ADDRESS: ip_equal,
}


# -- the table -------------------------------------------------------------------------------

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("match", False, (STRING, STRING), ValueType.BOOL, glob_match, "match(str, glob)"),
        Function("matches", True, (STRING, STRING), ValueType.BOOL, regex_matches,
                 '"regex".matches(str)'),
        Function("startsWith", True, (STRING, STRING), ValueType.BOOL, str.startswith,
                 "str.startsWith(prefix)"),
        Function("endsWith", True, (STRING, STRING), ValueType.BOOL, str.endswith,
                 "str.endsWith(suffix)"),
        Function("ip", False, (STRING,), ValueType.IP_ADDRESS, to_ip, 'ip("10.0.0.1")'),
        Function("timestamp", False, (STRING,), ValueType.TIMESTAMP, to_timestamp,
                 'timestamp("2015-01-02T15:04:35Z")'),
        Function("email", False, (STRING,), ValueType.EMAIL_ADDRESS, to_email, 'email("a@b.c")'),
        Function("dnsName", False, (STRING,), ValueType.DNS_NAME, to_dns_name, 'dnsName("a.b")'),
        Function("uri", False, (STRING,), ValueType.URI, to_uri, 'uri("http://x")'),
        Function("toLower", False, (STRING,), ValueType.STRING, str.lower, "toLower(str)"),
        Function("size", False, (SIZED,), ValueType.INT64, len, "size(str or map)"),
        Function("emptyStringMap", False, (), ValueType.STRING_MAP, None, "emptyStringMap()"),
        Function("conditional", False, (BOOL, ANY, ANY), None, None, "conditional(cond, a, b)"),
        # Mixer's older string-only spelling of conditional.
        Function("conditionalString", False, (BOOL, STRING, STRING), ValueType.STRING, None,
                 "conditionalString(cond, a, b)"),
    )
}

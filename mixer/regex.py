"""Regular expressions on RE2: linear time in the text, so a pattern from config cannot hang a check.

Used by the expression language's ``matches()`` and by the list adapter's REGEX entries. RE2 has
no backreferences or lookaround; a pattern that needs them is rejected with RE2's reason.

    >>> compile_regex("^/api/v[0-9]+").search("/api/v2/items") is not None
    True
    >>> try:
    ...     compile_regex("a(?=b)")
    ... except RegexError as exc:
    ...     print(exc)
    invalid regular expression 'a(?=b)': invalid perl operator: (?=
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import re2

__all__ = ["Regex", "RegexError", "compile_regex"]


class Regex(Protocol):
    """What callers use of a compiled RE2 pattern (Go's ``regexp`` semantics: unanchored search)."""

    pattern: str

    def search(self, text: str) -> Any: ...


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message names the pattern and RE2's reason."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would also print each bad pattern on stderr
    return options


_OPTIONS = _options()


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: str) -> Regex:
    """Compile ``pattern`` with RE2 (cached: patterns computed per bag repeat); raise RegexError."""
    try:
        compiled: Regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"invalid regular expression {pattern!r}: {reason}") from None
    return compiled

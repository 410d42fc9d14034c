"""Exceptions raised by the expression language: compile-time and evaluation-time."""

from __future__ import annotations


class ExpressionError(ValueError):
    """A parse or type error found while compiling; points at a 0-based offset in the text."""

    def __init__(self, message: str, expression: str, position: int) -> None:
        self.message = message
        self.expression = expression
        self.position = position
        super().__init__(f"{message} (at column {position + 1} of {_shown(expression, position)})")

    def __reduce__(self) -> tuple[type[ExpressionError], tuple[str, str, int]]:
        # Keeps the error picklable (e.g. across process pools) despite the custom __init__.
        return (type(self), (self.message, self.expression, self.position))


def _shown(expression: str, position: int, width: int = 120) -> str:
    """The expression as quoted in an error: a long one is cut to a window around the column."""
    if len(expression) <= width:
        return repr(expression)
    start = max(0, min(position - width // 2, len(expression) - width))
    head = "..." if start else ""
    tail = "..." if start + width < len(expression) else ""
    return f"{head}{expression[start:start + width]!r}{tail} ({len(expression)} characters)"


class EvaluationError(Exception):
    """Evaluating a compiled expression against one bag failed (absent attribute, bad value...)."""


class AbsentError(EvaluationError):
    """An attribute the expression needs is not in the bag.

    Private to the package: it is the signal the ``|`` operator catches to fall back to its
    right-hand side. Callers see it as a plain EvaluationError.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)


def absent_attribute(name: str) -> AbsentError:
    return AbsentError(f"attribute {name!r} is absent")



class UnknownValue(Exception):
    """Raised by a caller's Mapping for an attribute it cannot know yet, to evaluate a rule against
    only what is fixed in advance (a sidecar's own identity): ``Expression.decide``.

    Deliberately not an EvaluationError: no closure may mistake it for absence and fall back to a
    ``|`` default, and the exception guard lets it through unchanged.
    """


class CompileError(Exception):
    """Raised inside the parser/checker with a position; turned into ExpressionError at the API."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

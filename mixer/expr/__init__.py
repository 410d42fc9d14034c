"""Mixer's configuration expression language (CEXL): compile text once, evaluate per bag.

    >>> from mixer.attributes import default_manifest
    >>> expr = compile_expression('request.headers["x-user"] | "anonymous"', default_manifest())
    >>> expr.type, expr.evaluate({"request.headers": {"x-user": "ann"}})
    (<ValueType.STRING: 'STRING'>, 'ann')

Syntax is a subset of Go expressions, as in Mixer: literals ("s", 's', `raw`, 42, 1.5,
true), dotted attribute names, ``m["k"]`` on STRING_MAP, ``|`` (first present operand),
``|| && == != < <= > >= + ! -`` and the functions in ``_functions``. Precedence is Go's, so
``|`` binds like ``+``: ``a | "x" == "y"`` is ``(a | "x") == "y"``.

Types are checked at compile time (ExpressionError). ``|`` requires operands of one type (the
string-like STRING/DNS_NAME/EMAIL_ADDRESS/URI count as one), except that a string literal
facing a DURATION, TIMESTAMP or IP_ADDRESS is read as a constant of that type
(``response.duration | "0ms"``); the same holds for conditional() branches. Comparisons need
one exact type on both sides (with the same literal rule): INT64 and DOUBLE never mix, and a
DNS_NAME, EMAIL_ADDRESS or URI is not compared with a STRING.

Evaluation raises EvaluationError, e.g. for an absent attribute not guarded by ``|``; a map
index whose key is missing reads as "" (Mixer's runtime). ``a | b`` falls back to ``b`` when
``a`` itself is absent (an attribute, or a map index whose map or key is missing); absence
deeper inside ``a`` and other failures (a bad regex or IP text at run time) propagate.
"""

from __future__ import annotations

import sys

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._checker import check
from ._compiler import (
    AttributeEquality,
    Conjunct,
    compile_conjuncts,
    compile_unguarded,
    default_lookup_attribute,
    default_map_lookup,
    guarded,
)
from ._errors import CompileError, EvaluationError, ExpressionError, UnknownValue
from ._parser import parse
from ._references import Reference, references
from ..attributes import ValueType

__all__ = [
    "AttributeEquality",
    "Conjunct",
    "compile_expression",
    "Expression",
    "ExpressionError",
    "Reference",
    "EvaluationError",
    "UnknownValue",
]


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: its static type and a closure evaluating it against a bag."""

    text: str
    type: ValueType
    evaluate: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)
    attributes: frozenset[str]
    constant: bool  # references no attribute: evaluate() returns the same value for any bag
    # What evaluate() reads: attribute names, and (map, key) for a map read only at constant keys.
    references: frozenset[Reference] = frozenset()
    # The top-level ``&&`` operands, compiled apart, for decide(); empty: decide() uses evaluate.
    conjuncts: tuple[Conjunct, ...] = field(default=(), repr=False, compare=False)
    # ``(attribute, fallback)`` when the expression is ``attribute | constant``: evaluate(bag) is then
    # exactly ``bag.get(attribute, fallback)``, which a caller may run for many expressions in C
    # (``map(bag.get, names, fallbacks)``) instead of one closure call each.
    lookup: tuple[str, Any] | None = field(default=None, repr=False, compare=False)
    # ``evaluate`` without its exception guard, for hot loops over many expressions: the same value
    # for a well-typed bag, but an ill-typed one may make it raise anything. A caller catches
    # Exception around a whole loop and then re-evaluates with ``evaluate`` (which raises
    # EvaluationError naming the expression); one try per loop instead of one frame per expression.
    evaluate_unguarded: Callable[[Mapping[str, Any]], Any] | None = field(default=None, repr=False, compare=False)
    # ``(attribute, key, fallback)`` when the expression is ``attribute["key"] | constant``: evaluate(bag)
    # is then ``fallback`` without the map, else ``bag[attribute].get(key, fallback)``.
    map_lookup: tuple[str, str, Any] | None = field(default=None, repr=False, compare=False)

    def decide(self, facts: Mapping[str, Any]) -> bool | None:
        """Whether this BOOL expression holds for every bag that agrees with ``facts``.

        ``facts`` raises UnknownValue for each attribute not fixed in advance (``__getitem__``,
        ``get`` and ``in`` alike). True: it holds for every such bag; False: it holds for none (false
        or failing, so a rule with it never fires); None: it depends on the unknown attributes. The
        ``&&`` chain is decided operand by operand, so ``unknown && false`` is False.
        """
        unknown = False
        for evaluate in [c.evaluate for c in self.conjuncts] or [self.evaluate]:
            try:
                if not evaluate(facts):
                    return False
            except UnknownValue:
                unknown = True
            except EvaluationError:
                return False  # failed on fixed values alone: fails for every such bag
        return None if unknown else True


def compile_expression(text: str, manifest: Mapping[str, ValueType]) -> Expression:
    """Parse, type-check and compile ``text`` against ``manifest``; raise ExpressionError."""
    if not isinstance(text, str):
        raise TypeError(f"expression must be a string, not {type(text).__name__}")
    _allow_generated_depth()
    try:
        tree = check(parse(text), manifest)
        unguarded = compile_unguarded(tree)
        evaluate = guarded(unguarded, tree, text)
    except CompileError as exc:
        raise ExpressionError(exc.message, text, exc.position) from None
    except RecursionError:
        raise ExpressionError("expression is nested too deeply", text, 0) from None
    conjuncts = compile_conjuncts(tree, text) if tree.type is ValueType.BOOL and tree.attrs else ()
    lookup = None
    if (name := default_lookup_attribute(tree)) is not None:
        lookup = (name, evaluate({}))  # the fallback, exactly as the closure gives it for an absent attribute
    map_lookup = None
    if (indexed := default_map_lookup(tree)) is not None:
        map_lookup = (*indexed, evaluate({}))
    return Expression(
        text, tree.type, evaluate, tree.attrs, not tree.attrs,
        references=references(tree), conjuncts=conjuncts, lookup=lookup,
        evaluate_unguarded=unguarded, map_lookup=map_lookup,
    )


# A generated config chains hundreds of ``&&`` / ``+`` operands or nests hundreds of parentheses;
# each level is a few Python frames in the parser, checker, compiler and the compiled closures.
# Python 3.11+ runs Python-to-Python calls without growing the C stack, so a higher limit is safe;
# it is only ever raised (never lowered, so no thread sees it shrink under a deep call).
_FRAMES_FOR_EXPRESSIONS = 20_000


def _allow_generated_depth() -> None:
    if sys.getrecursionlimit() < _FRAMES_FOR_EXPRESSIONS:
        sys.setrecursionlimit(_FRAMES_FOR_EXPRESSIONS)

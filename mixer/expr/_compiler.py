"""Turns a type-checked tree into nested Python closures, one per node, with fast paths.

Absence follows Mixer's runtime. A "strict" closure raises AbsentError (an EvaluationError)
for a missing attribute; a map index whose key is missing gives "" (Mixer's bag did). An
"optional" closure, used for the operands of ``|``, returns None instead when the operand
itself is absent: an attribute, or a map index whose map, key attribute or key is missing.
Anything deeper (``ip(x) | ip(y)`` with ``x`` absent) is an error, as in Mixer, whose ``|``
tested only the attribute or lookup directly under it. Bag values are never None, so the
common ``attr | "default"`` shape collapses into a single ``bag.get(name, default)``.
Subtrees that reference no attribute are evaluated once here (constant folding).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _functions as F
from ._checker import flatten_default
from ._errors import CompileError, EvaluationError, UnknownValue, absent_attribute
from ._nodes import Attr, Binary, Call, Index, Literal, Node, Unary
from ..attributes import ValueType
from ..regex import RegexError, compile_regex

Fn = Callable[[Mapping[str, Any]], Any]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EMPTY_BAG: Mapping[str, Any] = {}
_ORDER_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def compile_tree(node: Node, text: str) -> Fn:
    """The evaluate closure for a checked tree; it raises EvaluationError only."""
    return guarded(compile_unguarded(node), node, text)


def compile_unguarded(node: Node) -> Fn:
    """The closure without the guard: on a bag whose values do not fit the manifest it may raise
    anything (TypeError ...), which ``guarded`` turns into EvaluationError."""
    return _Compiler().strict(node)


def guarded(fn: Fn, node: Node, text: str) -> Fn:
    """``fn`` raising EvaluationError only (as is, when its shape cannot raise anything else)."""
    if _never_raises_oddly(node):
        return fn
    return _guard(fn, text)


@dataclass(frozen=True, slots=True)
class AttributeEquality:
    """A STRING test ``attr == "value"`` or ``(attr | "default") == "value"`` (either side order)."""

    attribute: str
    value: str
    default: str | None  # None: no default, an absent attribute makes the test fail


@dataclass(frozen=True, slots=True)
class Conjunct:
    """One operand of an expression's top-level ``&&`` chain: its closure, and its shape when it is
    a plain equality (which a proxy can test by itself)."""

    evaluate: Fn
    equality: AttributeEquality | None


def compile_conjuncts(node: Node, text: str) -> tuple[Conjunct, ...]:
    """One evaluate closure per operand of the tree's top-level ``&&`` chain (the tree itself when
    it is not a conjunction): the whole is true only when each is, and false as soon as one is false,
    whatever the others would have raised."""
    operands: list[Node] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, Binary) and current.op == "&&":
            pending += [current.right, current.left]  # popped left first: source order
        else:
            operands.append(current)
    return tuple(Conjunct(compile_tree(operand, text), _equality(operand)) for operand in operands)


def default_lookup_attribute(node: Node) -> str | None:
    """The attribute of an ``attribute | constant`` tree (the constant not a map), else None.

    The compiler turns exactly that shape into ``bag.get(attribute, constant)`` (``default_to_constant``),
    so such an expression can be evaluated as that lookup.
    """
    if not (isinstance(node, Binary) and node.op == "|"):
        return None
    operands = flatten_default(node)
    if len(operands) != 2 or not isinstance(operands[0], Attr) or operands[1].attrs:
        return None
    if operands[1].type is ValueType.STRING_MAP:
        return None  # a map constant is handed out fresh each time, not shared
    return operands[0].name


def default_map_lookup(node: Node) -> tuple[str, str] | None:
    """(map attribute, key) of an ``attribute["key"] | constant`` tree (the constant not a map), else
    None: compiled to ``bag.get(attribute)`` then, when present, ``.get(key, constant)``."""
    if not (isinstance(node, Binary) and node.op == "|"):
        return None
    operands = flatten_default(node)
    if len(operands) != 2 or operands[1].attrs or operands[1].type is ValueType.STRING_MAP:
        return None
    index = operands[0]
    if not (isinstance(index, Index) and isinstance(index.target, Attr) and isinstance(index.key, Literal)
            and isinstance(index.key.value, str)):
        return None
    return index.target.name, index.key.value


def _equality(node: Node) -> AttributeEquality | None:
    if not (isinstance(node, Binary) and node.op == "==" and node.left.type is ValueType.STRING):
        return None
    tested, literal = node.left, node.right
    if isinstance(tested, Literal):
        tested, literal = literal, tested
    if not (isinstance(literal, Literal) and isinstance(literal.value, str)):
        return None
    operands = flatten_default(tested)
    if not isinstance(operands[0], Attr):
        return None
    if len(operands) == 1:
        return AttributeEquality(operands[0].name, literal.value, None)
    if len(operands) == 2 and isinstance(operands[1], Literal) and isinstance(operands[1].value, str):
        return AttributeEquality(operands[0].name, literal.value, operands[1].value)
    return None


def _never_raises_oddly(node: Node) -> bool:
    """Shapes whose closures can only raise AbsentError, so they need no exception guard."""
    if not node.attrs or isinstance(node, Attr):
        return True
    if isinstance(node, Binary) and node.op == "|":
        return all(isinstance(n, (Attr, Literal)) for n in flatten_default(node))
    if isinstance(node, Binary) and node.op in ("==", "!=") and node.left.type not in F.EQUALITY:
        # Python == between built-in values never raises; ip/dns/email/uri equality might.
        sides = {type(node.left), type(node.right)}
        return sides <= {Attr, Literal} and node.right.type not in F.EQUALITY
    return False


def _guard(fn: Fn, text: str) -> Fn:
    # A bag whose values do not match the manifest (or a bug in a built-in) must not escape
    # as TypeError & co: callers handle EvaluationError per bag and carry on.
    def evaluate(bag: Mapping[str, Any]) -> Any:
        try:
            return fn(bag)
        except (EvaluationError, UnknownValue):
            raise
        except Exception as exc:
            raise EvaluationError(f"evaluating {text!r} failed: {type(exc).__name__}: {exc}") from exc

    return evaluate


def _constant(value: Any) -> Fn:
    if isinstance(value, dict):
        # Hand out a fresh map each time: a caller mutating it must not change the constant.
        return lambda bag: dict(value)
    return lambda bag: value


class _Compiler:
    __slots__ = ("_folded",)

    def __init__(self) -> None:
        self._folded: dict[int, Any] = {}

    # -- constants ------------------------------------------------------------------------

    def const(self, node: Node) -> Any:
        """The value of an attribute-free subtree; folding errors are compile errors."""
        if isinstance(node, Literal):
            return node.value
        key = id(node)
        if key not in self._folded:
            try:
                value = self._build(node)(_EMPTY_BAG)
            except EvaluationError as exc:
                raise CompileError(str(exc), node.pos) from None
            except RecursionError:
                raise  # "nested too deeply", said once by compile_expression
            except Exception as exc:  # e.g. INT64 overflow in "9223372036854775807 + 1"
                raise CompileError(f"cannot evaluate constant: {exc}", node.pos) from None
            self._folded[key] = value
        return self._folded[key]

    def is_const(self, node: Node) -> bool:
        return not node.attrs

    # -- strict closures ------------------------------------------------------------------

    def strict(self, node: Node) -> Fn:
        if not node.attrs:
            return _constant(self.const(node))
        return self._build(node)

    def _build(self, node: Node) -> Fn:
        if isinstance(node, Literal):
            return _constant(node.value)
        if isinstance(node, Attr):
            return self.attr(node.name)
        if isinstance(node, Index):
            return self.index(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.default(node) if node.op == "|" else self.binary(node)
        if isinstance(node, Call):
            return self.call(node)
        raise CompileError(f"cannot compile {type(node).__name__}", node.pos)

    @staticmethod
    def attr(name: str) -> Fn:
        def get(bag: Mapping[str, Any]) -> Any:
            try:
                return bag[name]
            except KeyError:
                raise absent_attribute(name) from None

        return get

    def index(self, node: Index) -> Fn:
        target, key_node = node.target, node.key
        if isinstance(target, Attr) and self.is_const(key_node):
            name, key = target.name, self.const(key_node)

            def lookup(bag: Mapping[str, Any]) -> Any:
                try:
                    return bag[name].get(key, "")
                except KeyError:
                    raise absent_attribute(name) from None

            return lookup
        map_fn, key_fn = self.strict(target), self.strict(key_node)
        return lambda bag: map_fn(bag).get(key_fn(bag), "")

    def attr_or_constant(self, node: Node) -> tuple[str, Any] | None:
        """(name, fallback) when ``node`` is ``attribute | constant``: an operator over it then reads
        the bag itself, one closure where there would be two (rules' matches are mostly these)."""
        if (isinstance(node, Binary) and node.op == "|" and isinstance(node.left, Attr)
                and self.is_const(node.right) and not isinstance(self.const(node.right), dict)):
            return node.left.name, self.const(node.right)
        return None

    def unary(self, node: Unary) -> Fn:
        if node.op == "!" and (read := self.attr_or_constant(node.operand)) is not None:
            name, fallback = read
            return lambda bag: not bag.get(name, fallback)
        fn = self.strict(node.operand)
        if node.op == "!":
            return lambda bag: not fn(bag)
        if node.type is ValueType.INT64:
            def negate(bag: Mapping[str, Any]) -> Any:
                value = -fn(bag)
                if value > _INT64_MAX:
                    raise EvaluationError("INT64 overflow in unary '-'")
                return value

            return negate
        return lambda bag: -fn(bag)

    def binary(self, node: Binary) -> Fn:
        op, left, right = node.op, node.left, node.right
        if op in ("&&", "||"):
            return self.logical(op, left, right)
        if op == "+":
            return self.add(node)
        eq = F.EQUALITY.get(left.type) or F.EQUALITY.get(right.type)
        if op in ("==", "!=") and eq is None:
            return self.plain_equality(op == "==", left, right)
        if op in ("==", "!="):
            assert eq is not None  # plain equality was handled above
            equal = eq
            lf, rf = self.strict(left), self.strict(right)
            if op == "==":
                return lambda bag: equal(lf(bag), rf(bag))
            return lambda bag: not equal(lf(bag), rf(bag))
        cmp = _ORDER_OPS[op]
        lf = self.strict(left)
        if self.is_const(right):
            c = self.const(right)
            return lambda bag: cmp(lf(bag), c)
        rf = self.strict(right)
        return lambda bag: cmp(lf(bag), rf(bag))

    def plain_equality(self, equal: bool, left: Node, right: Node) -> Fn:
        if self.is_const(left) and not self.is_const(right):
            left, right = right, left  # equality is symmetric; keep the constant on the right
        if self.is_const(right):
            c = self.const(right)
            if isinstance(left, Attr):
                name = left.name

                def attr_eq(bag: Mapping[str, Any]) -> bool:
                    try:
                        value = bag[name]
                    except KeyError:
                        raise absent_attribute(name) from None
                    return (value == c) is equal

                return attr_eq
            if (read := self.attr_or_constant(left)) is not None:
                name, fallback = read
                if equal:
                    return lambda bag: bag.get(name, fallback) == c
                return lambda bag: bag.get(name, fallback) != c
            lf = self.strict(left)
            if equal:
                return lambda bag: lf(bag) == c
            return lambda bag: lf(bag) != c
        lf, rf = self.strict(left), self.strict(right)
        if equal:
            return lambda bag: lf(bag) == rf(bag)
        return lambda bag: lf(bag) != rf(bag)

    def logical(self, op: str, left: Node, right: Node) -> Fn:
        rf = self.strict(right)
        if self.is_const(left):  # "true && x" is x; "false && x" is false
            decided = bool(self.const(left))
            if (op == "&&") == decided:
                return rf
            return _constant(decided)
        lf = self.strict(left)
        if op == "&&":
            return lambda bag: lf(bag) and rf(bag)
        return lambda bag: lf(bag) or rf(bag)

    def add(self, node: Binary) -> Fn:
        lf, rf = self.strict(node.left), self.strict(node.right)
        if node.type is ValueType.INT64:
            def add_int(bag: Mapping[str, Any]) -> int:
                total: int = lf(bag) + rf(bag)
                if not _INT64_MIN <= total <= _INT64_MAX:
                    raise EvaluationError(f"INT64 overflow in '+': {total}")
                return total

            return add_int
        if node.type is ValueType.DOUBLE:
            return lambda bag: float(lf(bag) + rf(bag))
        if self.is_const(node.right):
            suffix = self.const(node.right)
            return lambda bag: lf(bag) + suffix
        return lambda bag: lf(bag) + rf(bag)

    # -- the default operator -------------------------------------------------------------

    def default(self, node: Binary) -> Fn:
        operands: list[Node] = []
        chain = flatten_default(node)
        for operand in chain:
            if not operand.attrs and operand is not chain[-1]:
                # A constant operand is present unless it is a lookup of a missing key
                # (emptyStringMap()["k"]); a present one makes later operands unreachable.
                if self.optional(operand)(_EMPTY_BAG) is None:
                    continue
                operands.append(operand)
                break
            operands.append(operand)
        last = operands[-1]
        if len(operands) == 1:
            return self.strict(last)
        firsts = operands[:-1]
        if self.is_const(last) and not isinstance(self.const(last), dict):
            fast = self.default_to_constant(firsts, self.const(last))
            if fast is not None:
                return fast
        options = [self.optional(n) for n in firsts]
        last_fn = self.strict(last)
        if len(options) == 1 and isinstance(firsts[0], Attr):
            name = firsts[0].name

            def attr_or(bag: Mapping[str, Any]) -> Any:  # ``a | ...``: the lookup without a call
                value = bag.get(name)
                return last_fn(bag) if value is None else value

            return attr_or
        if len(options) == 1:
            first = options[0]

            def either(bag: Mapping[str, Any]) -> Any:
                value = first(bag)
                return last_fn(bag) if value is None else value

            return either

        def first_present(bag: Mapping[str, Any]) -> Any:
            for option in options:
                value = option(bag)
                if value is not None:
                    return value
            return last_fn(bag)

        return first_present

    def default_to_constant(self, firsts: list[Node], fallback: Any) -> Fn | None:
        """Single-closure forms of ``a | "x"``, ``m["k"] | "x"`` and ``a | b | "x"``."""
        if len(firsts) == 1:
            only = firsts[0]
            if isinstance(only, Attr):
                name = only.name
                return lambda bag: bag.get(name, fallback)
            if isinstance(only, Index) and isinstance(only.target, Attr) and self.is_const(only.key):
                name, key = only.target.name, self.const(only.key)

                def map_get(bag: Mapping[str, Any]) -> Any:
                    mapping = bag.get(name)
                    return fallback if mapping is None else mapping.get(key, fallback)

                return map_get
        if all(isinstance(n, Attr) for n in firsts):
            names = tuple(n.name for n in firsts)  # type: ignore[attr-defined]

            def first_attr(bag: Mapping[str, Any]) -> Any:
                for name in names:
                    value = bag.get(name)
                    if value is not None:
                        return value
                return fallback

            return first_attr
        return None

    def optional(self, node: Node) -> Fn:
        """An operand of ``|``: None when the attribute or lookup itself is absent, else strict()."""
        if isinstance(node, Attr):
            name = node.name
            return lambda bag: bag.get(name)
        if isinstance(node, Index):
            if isinstance(node.target, Attr) and self.is_const(node.key):
                name, key = node.target.name, self.const(node.key)

                def map_get(bag: Mapping[str, Any]) -> Any:
                    mapping = bag.get(name)
                    return None if mapping is None else mapping.get(key)

                return map_get
            map_fn = self._presence(node.target)
            key_fn = self._presence(node.key)

            def lookup(bag: Mapping[str, Any]) -> Any:
                mapping = map_fn(bag)
                if mapping is None:
                    return None
                key = key_fn(bag)
                return None if key is None else mapping.get(key)

            return lookup
        return self.strict(node)

    def _presence(self, node: Node) -> Fn:
        """Inside a ``|`` operand's lookup: an attribute may be absent (None); the rest is strict."""
        return self.optional(node) if isinstance(node, Attr) else self.strict(node)

    # -- function calls -------------------------------------------------------------------

    def call(self, node: Call) -> Fn:
        name = node.name
        args = ([node.target] if node.target is not None else []) + node.args
        if name in ("conditional", "conditionalString"):
            return self.conditional(*args)
        if name == "emptyStringMap":
            return lambda bag: {}
        if name == "matches":
            return self.matches(args[0], args[1])
        if name == "match" and self.is_const(args[1]):
            predicate = F.glob_matcher(self.const(args[1]))
            text_fn = self.strict(args[0])
            return lambda bag: predicate(text_fn(bag))
        impl = F.FUNCTIONS[name].impl
        assert impl is not None, name
        fns = [self.strict(arg) for arg in args]
        if len(fns) == 1:
            (a,) = fns
            return lambda bag: impl(a(bag))
        a, b = fns
        if self.is_const(args[1]):
            c = self.const(args[1])
            return lambda bag: impl(a(bag), c)
        return lambda bag: impl(a(bag), b(bag))

    def conditional(self, cond: Node, yes: Node, no: Node) -> Fn:
        if self.is_const(cond):  # only the taken branch matters
            return self.strict(yes if self.const(cond) else no)
        cf, yf, nf = self.strict(cond), self.strict(yes), self.strict(no)
        if self.is_const(yes) and self.is_const(no):
            yv, nv = self.const(yes), self.const(no)
            if not isinstance(yv, dict) and not isinstance(nv, dict):
                return lambda bag: yv if cf(bag) else nv
        return lambda bag: yf(bag) if cf(bag) else nf(bag)

    def matches(self, pattern: Node, text: Node) -> Fn:
        """Mixer's ``"regex".matches(str)``: the receiver is the pattern; unanchored search."""
        text_fn = self.strict(text)
        if self.is_const(pattern):
            try:
                search = compile_regex(self.const(pattern)).search
            except RegexError as exc:
                raise CompileError(str(exc), pattern.pos) from None
            return lambda bag: search(text_fn(bag)) is not None
        pattern_fn = self.strict(pattern)
        return lambda bag: F.regex_matches(pattern_fn(bag), text_fn(bag))

"""Static type checker: resolves attributes against the manifest and types every node.

Besides checking, it rewrites string literals that sit in a typed context into typed
constants (``response.duration | "0ms"``, ``request.time < "2020-01-01T00:00:00Z"``,
``source.ip == "10.0.0.1"``). As in Mixer, INT64 and DOUBLE never mix (``1 == 1.0`` is a type
error), and comparisons need the same type on both sides: a DNS_NAME, EMAIL_ADDRESS or URI is
compared with another of its kind (``dnsName("a.b")``), not with a STRING.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._errors import CompileError
from ._functions import ANY, BOOL, FUNCTIONS, LITERAL_CONVERTIBLE, SIZED, STRING, literal_as
from ._nodes import Attr, Binary, Call, Index, Literal, Node, Unary
from ..attributes import STRING_LIKE, ValueType
from ..regex import RegexError, compile_regex

_ORDERED = frozenset({ValueType.INT64, ValueType.DOUBLE, ValueType.DURATION, ValueType.TIMESTAMP}) | STRING_LIKE
_PARAM_OK = {
    STRING: STRING_LIKE,
    BOOL: frozenset({ValueType.BOOL}),
    SIZED: STRING_LIKE | {ValueType.STRING_MAP},
}
_PARAM_NAME = {STRING: "STRING", BOOL: "BOOL", SIZED: "STRING or STRING_MAP"}


def check(node: Node, manifest: Mapping[str, ValueType]) -> Node:
    """Type ``node`` (and its children) in place; return it or its typed replacement."""
    return _Checker(manifest).visit(node)


def compatible(a: ValueType, b: ValueType) -> bool:
    """Whether values of the two types may meet in ``|`` or a conditional's branches."""
    return (a is b or (a in STRING_LIKE and b in STRING_LIKE)
            or ValueType.ANY in (a, b))


def comparable(a: ValueType, b: ValueType) -> bool:
    """Whether ``==``/``<`` & co. accept the two types: the same one (Mixer's EQ/LT signatures)."""
    return a is b or ValueType.ANY in (a, b)


def is_regex_literal(node: Node) -> bool:
    return isinstance(node, Literal) and isinstance(node.value, str)


class _Checker:
    __slots__ = ("manifest",)

    def __init__(self, manifest: Mapping[str, ValueType]) -> None:
        self.manifest = manifest

    def visit(self, node: Node) -> Node:
        if isinstance(node, Literal):
            return node  # typed by the parser
        if isinstance(node, Attr):
            return self.attr(node)
        if isinstance(node, Index):
            return self.index(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Call):
            return self.call(node)
        raise CompileError(f"unexpected node {type(node).__name__}", node.pos)

    def attr(self, node: Attr) -> Node:
        kind = self.manifest.get(node.name)
        if kind is None:
            raise CompileError(f"unknown attribute {node.name!r}{self._hint(node.name)}", node.pos)
        node.type = kind
        node.attrs = frozenset((node.name,))
        return node

    def _hint(self, name: str) -> str:
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            kind = self.manifest.get(prefix)
            if kind is ValueType.STRING_MAP:
                rest = ".".join(parts[cut:])
                return f" ({prefix!r} is a STRING_MAP: write {prefix}[\"{rest}\"])"
            if kind is not None:
                return f" ({prefix!r} is an attribute of type {kind.value})"
        return ""

    def index(self, node: Index) -> Node:
        node.target = self.visit(node.target)
        node.key = self.visit(node.key)
        if node.target.type not in (ValueType.STRING_MAP, ValueType.ANY):
            raise CompileError(f"cannot index a value of type {node.target.type.value}; "
                               "only STRING_MAP supports [\"key\"]", node.pos)
        if node.key.type not in STRING_LIKE and node.key.type is not ValueType.ANY:
            raise CompileError(f"map key must be a STRING, not {node.key.type.value}", node.key.pos)
        node.type = ValueType.STRING
        node.attrs = node.target.attrs | node.key.attrs
        return node

    def unary(self, node: Unary) -> Node:
        node.operand = operand = self.visit(node.operand)
        kind = operand.type
        if node.op == "!":
            if kind is not ValueType.BOOL:
                raise CompileError(f"operator '!' needs a BOOL, not {kind.value}", node.pos)
        elif kind not in (ValueType.INT64, ValueType.DOUBLE, ValueType.DURATION):
            raise CompileError(f"unary '-' needs INT64, DOUBLE or DURATION, not {kind.value}", node.pos)
        node.type = kind
        node.attrs = operand.attrs
        return node

    def binary(self, node: Binary) -> Node:
        op = node.op
        if op == "|":
            return self.default(node)
        left = node.left = self.visit(node.left)
        right = node.right = self.visit(node.right)
        node.attrs = left.attrs | right.attrs
        if op in ("&&", "||"):
            for side in (left, right):
                if side.type is not ValueType.BOOL:
                    raise CompileError(f"operator {op!r} needs BOOL operands, not {side.type.value}",
                                       side.pos)
            node.type = ValueType.BOOL
            return node
        if op == "+":
            node.type = self._add_type(node, left.type, right.type)
            return node
        # Comparisons: a string literal facing a DURATION/TIMESTAMP/IP_ADDRESS takes its type.
        left = node.left = _coerce(left, right.type)
        right = node.right = _coerce(right, left.type)
        lt, rt = left.type, right.type
        if op in ("==", "!="):
            if not comparable(lt, rt):
                raise CompileError(f"cannot compare {lt.value} with {rt.value} using {op!r}{_hint(lt, rt)}",
                                   node.pos)
        else:
            if not (lt in _ORDERED and rt in _ORDERED and comparable(lt, rt)):
                raise CompileError(f"operator {op!r} is not defined for {lt.value} and {rt.value}",
                                   node.pos)
        node.type = ValueType.BOOL
        return node

    @staticmethod
    def _add_type(node: Binary, lt: ValueType, rt: ValueType) -> ValueType:
        if lt is rt and lt in (ValueType.INT64, ValueType.DOUBLE):
            return lt
        if lt in STRING_LIKE and rt in STRING_LIKE:
            return ValueType.STRING
        raise CompileError(f"operator '+' is not defined for {lt.value} and {rt.value}{_hint(lt, rt)}",
                           node.pos)

    def default(self, node: Binary) -> Node:
        """``a | b | c``: typed as the operands, which must agree (string literals adapt).

        The whole chain is unified at once so that ``"0ms" | "1s" | response.duration`` works;
        the result is rebuilt left-nested, which the compiler flattens again.
        """
        operands = [self.visit(n) for n in flatten_default(node)]
        kind, operands = self.unify(operands, "'|'")
        chain = operands[0]
        for operand in operands[1:]:
            chain = Binary(node.pos, "|", chain, operand)
            chain.type = kind
            chain.attrs = chain.left.attrs | operand.attrs
        return chain

    @staticmethod
    def unify(nodes: list[Node], what: str) -> tuple[ValueType, list[Node]]:
        """The common type of ``nodes`` and the nodes with literals coerced to it."""
        # The first operand that is not a literal decides; literals then adapt to it.
        anchor = next((n for n in nodes if not isinstance(n, Literal)), nodes[0])
        kind = anchor.type
        coerced = [_coerce(n, kind) for n in nodes]
        for n in coerced:
            if not compatible(n.type, kind):
                raise CompileError(f"type mismatch in {what}: {n.type.value} where {kind.value} "
                                   "is expected (all operands must have the same type)", n.pos)
        return kind, coerced

    def call(self, node: Call) -> Node:
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            raise CompileError(f"unknown function {node.name!r}", node.pos)
        if spec.method and node.target is None:
            raise CompileError(f"{node.name!r} is a method: write {spec.usage}", node.pos)
        if not spec.method and node.target is not None:
            raise CompileError(f"{node.name!r} is a function, not a method: write {spec.usage}", node.pos)
        args = ([node.target] if node.target is not None else []) + node.args
        expected = len(spec.params) - (1 if spec.method else 0)
        if len(args) != len(spec.params):
            got = len(node.args)
            raise CompileError(f"{node.name}() takes {expected} argument{'s' if expected != 1 else ''}, "
                               f"got {got}: {spec.usage}", node.pos)
        args = [self.visit(arg) for arg in args]
        for param, arg in zip(spec.params, args):
            if param != ANY and arg.type not in _PARAM_OK[param] and arg.type is not ValueType.ANY:
                raise CompileError(f"{node.name}() expects {_PARAM_NAME[param]} here, got "
                                   f"{arg.type.value}: {spec.usage}", arg.pos)
        result = spec.result
        if result is None:  # conditional: the branches share one type
            branches = [i for i, p in enumerate(spec.params) if p == ANY]
            result, typed = self.unify([args[i] for i in branches], f"{node.name}() branches")
            for i, branch in zip(branches, typed):
                args[i] = branch
        if spec.name == "matches" and is_regex_literal(args[0]):
            pattern = args[0]
            try:
                compile_regex(getattr(pattern, "value", ""))
            except RegexError as exc:
                raise CompileError(str(exc), pattern.pos) from None
        if node.target is not None:
            node.target, node.args = args[0], args[1:]
        else:
            node.args = args
        node.type = result
        attrs: frozenset[str] = frozenset()
        for arg in args:
            attrs |= arg.attrs
        node.attrs = attrs
        return node


def flatten_default(node: Node) -> list[Node]:
    """The operands of a ``|`` chain, in evaluation order, however it is parenthesised."""
    if isinstance(node, Binary) and node.op == "|":
        return flatten_default(node.left) + flatten_default(node.right)
    return [node]


def _hint(a: ValueType, b: ValueType) -> str:
    """Why two types that look alike still do not mix."""
    numeric = {ValueType.INT64, ValueType.DOUBLE}
    if {a, b} == numeric:
        return " (INT64 and DOUBLE do not mix: write 1.0 for a DOUBLE)"
    if a in STRING_LIKE and b in STRING_LIKE:
        typed = a if a is not ValueType.STRING else b
        maker = {ValueType.DNS_NAME: "dnsName", ValueType.EMAIL_ADDRESS: "email", ValueType.URI: "uri"}
        return f" (convert the STRING with {maker.get(typed, 'a conversion')}(...))"
    return ""


def _coerce(node: Node, kind: ValueType) -> Node:
    """Retype a literal for a context of type ``kind`` when the language allows it."""
    if not isinstance(node, Literal):
        return node
    if node.bare_string and kind in LITERAL_CONVERTIBLE:
        try:
            value = literal_as(kind, node.value)
        except ValueError as exc:
            raise CompileError(str(exc), node.pos) from None
        typed = Literal(node.pos, value)
        typed.type = kind
        return typed
    return node

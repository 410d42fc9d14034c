"""Hand-written recursive-descent parser producing the syntax tree in ``_nodes``.

Precedence follows Go's expression grammar, because Mixer parsed CEXL with go/parser:
``||`` < ``&&`` < comparisons (``== != < <= > >=``, one level) < ``+`` and ``|`` (one level,
left-associative) < unary ``! -`` < postfix (``[]``, ``.method()``).
So ``a | "x" == "y"`` means ``(a | "x") == "y"`` exactly as in Mixer.
"""

from __future__ import annotations

from ._errors import CompileError
from ._lexer import Token, tokenize
from ._nodes import Attr, Binary, Call, Index, Literal, Node, Unary
from ..attributes import ValueType

_INT64_MAX = 2**63 - 1

# Binary operator -> precedence level (higher binds tighter), as in the Go spec.
_BINARY_LEVEL = {
    "||": 1,
    "&&": 2,
    "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
    "+": 4, "|": 4,
}


def parse(text: str) -> Node:
    """Parse ``text`` into a tree; raise CompileError (with position) on syntax errors."""
    parser = _Parser(tokenize(text))
    if parser.peek.kind == "eof":
        raise CompileError("empty expression", 0)
    node = parser.binary(1)
    parser.expect_end()
    return node


class _Parser:
    __slots__ = ("tokens", "index")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def expect(self, kind: str, what: str) -> Token:
        token = self.peek
        if token.kind != kind:
            raise CompileError(f"expected {what}, found {_describe(token)}", token.pos)
        return self.advance()

    def expect_end(self) -> None:
        token = self.peek
        if token.kind == "eof":
            return
        if token.kind == "-":
            raise CompileError("binary '-' is not supported (only unary minus)", token.pos)
        raise CompileError(f"unexpected {_describe(token)}", token.pos)

    # -- grammar ----------------------------------------------------------------------------

    def binary(self, min_level: int) -> Node:
        left = self.unary()
        while True:
            token = self.peek
            level = _BINARY_LEVEL.get(token.kind)
            if level is None or level < min_level:
                return left
            self.advance()
            right = self.binary(level + 1)  # left-associative
            left = Binary(token.pos, token.kind, left, right)

    def unary(self) -> Node:
        token = self.peek
        if token.kind == "!":
            self.advance()
            return Unary(token.pos, "!", self.unary())
        if token.kind == "-":
            self.advance()
            operand = self.peek
            # Fold "-<number>" into one literal so that -9223372036854775808 is in range.
            if operand.kind in ("int", "float") and self.tokens[self.index + 1].kind not in ("[", "."):
                self.advance()
                value = -operand.value
                if operand.kind == "int" and value < -_INT64_MAX - 1:
                    raise CompileError(f"integer literal -{operand.text} is out of INT64 range", token.pos)
                node = Literal(token.pos, value)
                node.type = ValueType.INT64 if operand.kind == "int" else ValueType.DOUBLE
                return self.postfix(node)
            return Unary(token.pos, "-", self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek
            if token.kind == "[":
                self.advance()
                key = self.binary(1)
                self.expect("]", "']'")
                node = Index(token.pos, node, key)
            elif token.kind == ".":
                self.advance()
                name = self.expect("ident", "a method name after '.'")
                if self.peek.kind != "(":
                    raise CompileError(
                        f"field access '.{name.text}' is not supported here; only method calls "
                        "such as .startsWith(\"x\")", name.pos)
                node = Call(name.pos, name.text, node, self.arguments())
            else:
                return node

    def primary(self) -> Node:
        token = self.advance()
        kind = token.kind
        if kind == "int":
            if token.value > _INT64_MAX:
                raise CompileError(f"integer literal {token.text} is out of INT64 range", token.pos)
            return _literal(token, ValueType.INT64)
        if kind == "float":
            return _literal(token, ValueType.DOUBLE)
        if kind == "string":
            node = _literal(token, ValueType.STRING)
            node.bare_string = True
            return node
        if kind == "(":
            inner = self.binary(1)
            self.expect(")", "')'")
            return inner
        if kind == "ident":
            return self.name(token)
        if kind == "eof":
            raise CompileError("unexpected end of expression", token.pos)
        raise CompileError(f"unexpected {_describe(token)}", token.pos)

    def name(self, first: Token) -> Node:
        """A dotted name: an attribute, a function call f(...), or a method call a.b.f(...)."""
        lowered = first.text.lower()
        if lowered in ("true", "false") and self.peek.kind != ".":
            # Mixer lower-cased identifiers before recognising booleans, so TRUE works too.
            return _literal(first, ValueType.BOOL, lowered == "true")
        parts = [first]
        # Attribute names are flat dotted strings: consume ".ident" while no call follows.
        while (self.peek.kind == "." and self.tokens[self.index + 1].kind == "ident"
               and self.tokens[self.index + 2].kind != "("):
            self.advance()
            parts.append(self.advance())
        if self.peek.kind == "(":  # function call: f(...)
            return Call(first.pos, first.text, None, self.arguments())
        node: Node = Attr(first.pos, ".".join(part.text for part in parts))
        return node

    def arguments(self) -> list[Node]:
        self.expect("(", "'('")
        args: list[Node] = []
        while self.peek.kind != ")":
            args.append(self.binary(1))
            if self.peek.kind != ",":
                break
            self.advance()  # Go allows a trailing comma
        self.expect(")", "',' or ')'")
        return args


def _literal(token: Token, kind: ValueType, value: object = None) -> Literal:
    node = Literal(token.pos, token.value if value is None else value)
    node.type = kind
    return node


def _describe(token: Token) -> str:
    if token.kind == "eof":
        return "end of expression"
    if token.kind == "ident":
        return f"identifier {token.text!r}"
    if token.kind in ("int", "float", "string"):
        return f"literal {token.text}"
    return f"{token.text!r}"

"""Syntax tree of the expression language; the checker fills in ``type`` and ``attrs``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..attributes import ValueType


@dataclass(eq=False, slots=True)
class Node:
    pos: int  # 0-based offset of the construct (operators: of the operator) for error messages
    type: ValueType = field(default=ValueType.ANY, init=False)
    attrs: frozenset[str] = field(default=frozenset(), init=False)


@dataclass(eq=False, slots=True)
class Literal(Node):
    value: Any
    # True for a string literal written in the source: only those may be reinterpreted as a
    # DURATION/TIMESTAMP/IP_ADDRESS constant when the context demands that type.
    bare_string: bool = False


@dataclass(eq=False, slots=True)
class Attr(Node):
    name: str


@dataclass(eq=False, slots=True)
class Index(Node):
    target: Node
    key: Node


@dataclass(eq=False, slots=True)
class Call(Node):
    name: str
    target: Node | None  # receiver of a method call ("x".matches(y)); None for f(x)
    args: list[Node]


@dataclass(eq=False, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(eq=False, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node

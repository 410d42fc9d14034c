"""Tokenizer for the expression language (Go expression lexical syntax, as Mixer used go/parser)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import CompileError

# Kinds: "ident", "int", "float", "string", "eof", or the operator/punctuation text itself.
_OPERATORS = ("||", "&&", "==", "!=", "<=", ">=", "|", "<", ">", "+", "-", "!", "(", ")", "[", "]",
              ".", ",")
# Go operators CEXL does not implement: reject them with a clear message rather than "unexpected".
_UNSUPPORTED = ("<<", ">>", "&^", "*", "/", "%", "&", "^", "=", ":", "?", "{", "}", ";")

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\", "'": "'", '"': '"'}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int
    value: Any = None


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an "eof" token; raise CompileError on bad input."""
    tokens: list[Token] = []
    pos, end = 0, len(text)
    while pos < end:
        char = text[pos]
        if char.isspace():
            pos += 1
        elif char.isalpha() or char == "_":
            start = pos
            while pos < end and (text[pos].isalnum() or text[pos] == "_"):
                pos += 1
            tokens.append(Token("ident", text[start:pos], start))
        elif _digit(char) or (char == "." and pos + 1 < end and _digit(text[pos + 1])):
            token = _number(text, pos)
            tokens.append(token)
            pos += len(token.text)
        elif char in "\"'`":
            token = _string(text, pos)
            tokens.append(token)
            pos += len(token.text)
        else:
            for op in _OPERATORS:
                if text.startswith(op, pos):
                    tokens.append(Token(op, op, pos))
                    pos += len(op)
                    break
            else:
                for op in _UNSUPPORTED:
                    if text.startswith(op, pos):
                        hint = " (use '==' to compare)" if op == "=" else ""
                        raise CompileError(f"operator {op!r} is not supported{hint}", pos)
                raise CompileError(f"unexpected character {char!r}", pos)
    tokens.append(Token("eof", "", end))
    return tokens


def _digit(char: str) -> bool:
    # ASCII only: str.isdigit() also accepts e.g. "²", which int() then rejects.
    return "0" <= char <= "9"


def _number(text: str, start: int) -> Token:
    pos, end = start, len(text)
    is_float = False
    while pos < end and _digit(text[pos]):
        pos += 1
    if pos < end and text[pos] == ".":
        is_float = True
        pos += 1
        while pos < end and _digit(text[pos]):
            pos += 1
    if pos < end and text[pos] in "eE":
        exp = pos + 1
        if exp < end and text[exp] in "+-":
            exp += 1
        if exp < end and _digit(text[exp]):
            is_float = True
            pos = exp
            while pos < end and _digit(text[pos]):
                pos += 1
    # "0x10", "12abc": Mixer parsed integers as base-10 only, so anything glued on is an error.
    if pos < end and (text[pos].isalnum() or text[pos] == "_"):
        raise CompileError(f"invalid number literal {text[start:pos + 1]!r}", start)
    literal = text[start:pos]
    if is_float:
        value = float(literal)
        if value in (float("inf"), float("-inf")):
            raise CompileError(f"floating-point literal {literal!r} is out of range", start)
        return Token("float", literal, start, value)
    # More digits than any INT64 has: refused here, before int() is asked to convert thousands of
    # digits (which it refuses past 4300). The exact bounds are the parser's (it knows the sign).
    if len(literal.lstrip("0")) > 19:
        raise CompileError(f"integer literal {_abbreviated(literal)} is out of INT64 range", start)
    return Token("int", literal, start, int(literal))


def _abbreviated(literal: str) -> str:
    return repr(literal) if len(literal) <= 24 else f"'{literal[:20]}...' ({len(literal)} digits)"


def _string(text: str, start: int) -> Token:
    quote = text[start]
    end = len(text)
    pos = start + 1
    if quote == "`":  # Go raw string: no escapes, handy for regular expressions.
        close = text.find("`", pos)
        if close < 0:
            raise CompileError("unterminated string literal", start)
        return Token("string", text[start:close + 1], start, text[pos:close])
    out: list[str] = []
    while True:
        if pos >= end or text[pos] == "\n":
            raise CompileError("unterminated string literal", start)
        char = text[pos]
        if char == quote:
            return Token("string", text[start:pos + 1], start, "".join(out))
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        if pos + 1 >= end:
            raise CompileError("unterminated string literal", start)
        esc = text[pos + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            pos += 2
        elif esc in _HEX_ESCAPES:
            digits = text[pos + 2:pos + 2 + _HEX_ESCAPES[esc]]
            if len(digits) != _HEX_ESCAPES[esc] or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise CompileError(f"invalid escape sequence '\\{esc}{digits}'", pos)
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise CompileError(f"escape sequence '\\{esc}{digits}' is not a valid character", pos)
            out.append(chr(code))
            pos += 2 + len(digits)
        elif esc in "01234567":
            digits = text[pos + 1:pos + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or int(digits, 8) > 255:
                raise CompileError(f"invalid octal escape '\\{digits}'", pos)
            out.append(chr(int(digits, 8)))
            pos += 4
        else:
            raise CompileError(f"unknown escape sequence '\\{esc}'", pos)

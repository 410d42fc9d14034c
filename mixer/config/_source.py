"""Read multi-document YAML keeping each value's line and column, so errors can point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One config error: ``file:line:col: path: message``."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


@dataclass(frozen=True, slots=True)
class Note:
    """Something config loading tells that is not an error: ``file:line:col: level: message``."""

    level: str  # "info" or "warning"
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.level}: {self.message}"


@dataclass
class SourceDocument:
    """One YAML document: its data and where each path in it was written."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int, str | None]] = field(default_factory=dict)  # path -> line, col, style
    key_positions: dict[Path, tuple[int, int, str | None]] = field(default_factory=dict)  # where the key is

    def problem(
        self, path: Path, message: str, label: str = "", offset: int | None = None, at_key: bool = False
    ) -> Problem:
        """A Problem at ``path`` (or its closest written ancestor); ``offset`` points inside a scalar,
        ``at_key`` at the mapping key rather than its value (for unknown fields)."""
        table = self.key_positions if at_key and path in self.key_positions else self.positions
        probe = path
        while probe not in table and probe:
            probe = probe[:-1]
        line, column, style = table.get(probe, (1, 1, None))
        if offset is not None and probe == path:
            column += offset + (1 if style in ("'", '"') else 0)
        return Problem(self.file, line, column, label or format_path(path), message)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# A config file larger than this is refused before parsing (a typo'd path to a log file, an attack).
MAX_FILE_BYTES = 32 * 1024 * 1024
# Values a document may expand to beyond one per byte of its text: aliases legitimately repeat a
# block a few times; a "billion laughs" expands a few hundred bytes into billions of values.
_EXPANSION_ALLOWANCE = 10_000


# Deeper than any Mixer document needs. Checked explicitly: the RecursionError fallback alone depends
# on the process's recursion limit, which compiling expressions raises (mixer.expr).
MAX_NESTING = 256


class _TooDeep(Exception):
    pass


class _Refused(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def read_documents(text: str, file: str) -> tuple[list[SourceDocument], list[Problem]]:
    """Parse every document in ``text``; a YAML syntax error, an alias bomb, a self-referencing
    alias or nesting too deep becomes a Problem, never an exception or unbounded memory."""
    documents: list[SourceDocument] = []
    if len(text) > MAX_FILE_BYTES:
        return documents, [Problem(file, 1, 1, "", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")]
    walk = _Walk(values=len(text) + _EXPANSION_ALLOWANCE)
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            doc = SourceDocument(file, None)
            doc.data = walk.convert(node, (), doc)
            if doc.data is not None:  # an empty document (a trailing `---`, as Helm and kubectl write)
                documents.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        return documents, [Problem(file, line, column, "", f"bad YAML: {message}")]
    except yaml.YAMLError as exc:
        return documents, [Problem(file, 1, 1, "", f"bad YAML: {exc}")]
    except _Refused as exc:
        line, column, _ = _mark(exc.node)
        return documents, [Problem(file, line, column, "", str(exc))]
    except (RecursionError, _TooDeep):
        return documents, [Problem(file, 1, 1, "", "bad YAML: nested too deeply")]
    return documents, []


class _Walk:
    """Turns composed nodes into plain data within a budget of values, recording positions."""

    def __init__(self, values: int) -> None:
        self.left = values
        self.active: set[int] = set()  # collections being converted: an alias back to one is a cycle
        # One constructor per read: it caches every node it constructs.
        self.constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: Path, doc: SourceDocument) -> Any:
        self.left -= 1
        if self.left < 0:
            raise _Refused(node, "bad YAML: aliases expand to more values than the file has bytes (an alias bomb?)")
        if len(path) > MAX_NESTING:
            raise _TooDeep
        doc.positions[path] = _mark(node)
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            return self.constructor.construct_object(node, deep=True)
        if id(node) in self.active:
            raise _Refused(node, "bad YAML: an alias refers to a value that contains it")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*path, index), doc) for index, item in enumerate(node.value)]
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(key_node, "bad YAML: a mapping key must be a plain value")
                key = self.constructor.construct_object(key_node, deep=True)
                doc.key_positions[(*path, key)] = _mark(key_node)
                out[key] = self.convert(value_node, (*path, key), doc)
            return out
        finally:
            self.active.discard(id(node))


def _mark(node: yaml.Node) -> tuple[int, int, str | None]:
    return node.start_mark.line + 1, node.start_mark.column + 1, getattr(node, "style", None)

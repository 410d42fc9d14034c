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


def read_documents(text: str, file: str) -> tuple[list[SourceDocument], list[Problem]]:
    """Parse every document in ``text``; a YAML syntax error becomes a Problem, not an exception."""
    documents: list[SourceDocument] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            doc = SourceDocument(file, None)
            doc.data = _convert(node, (), doc)
            documents.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        return documents, [Problem(file, line, column, "", f"bad YAML: {message}")]
    except yaml.YAMLError as exc:
        return documents, [Problem(file, 1, 1, "", f"bad YAML: {exc}")]
    return documents, []


_CONSTRUCTOR = yaml.SafeLoader("")


def _convert(node: yaml.Node, path: Path, doc: SourceDocument) -> Any:
    doc.positions[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _CONSTRUCTOR.construct_object(key_node, deep=True)
            if isinstance(key, (dict, list)):
                key = str(key)
            doc.key_positions[(*path, key)] = _mark(key_node)
            out[key] = _convert(value_node, (*path, key), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, index), doc) for index, item in enumerate(node.value)]
    return _CONSTRUCTOR.construct_object(node, deep=True)


def _mark(node: yaml.Node) -> tuple[int, int, str | None]:
    return node.start_mark.line + 1, node.start_mark.column + 1, getattr(node, "style", None)

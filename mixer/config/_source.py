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

    def problem(self, path: Path, message: str, label: str = "", offset: int | None = None) -> Problem:
        """A Problem at ``path`` (or its closest written ancestor); ``offset`` points inside a scalar."""
        probe = path
        while probe not in self.positions and probe:
            probe = probe[:-1]
        line, column, style = self.positions.get(probe, (1, 1, None))
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
            doc.data = _convert(node, (), doc.positions)
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


def _convert(node: yaml.Node, path: Path, positions: dict[Path, tuple[int, int, str | None]]) -> Any:
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1, getattr(node, "style", None))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _CONSTRUCTOR.construct_object(key_node, deep=True)
            if isinstance(key, (dict, list)):
                key = str(key)
            out[key] = _convert(value_node, (*path, key), positions)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, index), positions) for index, item in enumerate(node.value)]
    return _CONSTRUCTOR.construct_object(node, deep=True)

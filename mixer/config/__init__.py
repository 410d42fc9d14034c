"""Load Mixer-shape YAML config (handler / instance / rule / attributemanifest, and Istio's
ServiceRole / ServiceRoleBinding for the rbac adapter) and validate it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mixer.config._compile import (
    CompiledAction,
    CompiledConfig,
    CompiledHandler,
    CompiledInstance,
    CompiledRule,
    ConfigError,
    compile_config,
)
from mixer.config._rbac import (
    AccessRule,
    Constraint,
    RbacPolicy,
    RoleSubject,
    ServiceRole,
    ServiceRoleBinding,
    UsesRbacPolicy,
)
from mixer.config._source import Note, Problem
from mixer.registry import AdapterRegistry

__all__ = [
    "AccessRule",
    "CompiledAction",
    "CompiledConfig",
    "CompiledHandler",
    "CompiledInstance",
    "CompiledRule",
    "ConfigError",
    "Constraint",
    "Note",
    "Problem",
    "RbacPolicy",
    "RoleSubject",
    "ServiceRole",
    "ServiceRoleBinding",
    "UsesRbacPolicy",
    "compile_config",
    "load_config",
    "read_sources",
]

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "defaultconfig"


def read_sources(paths: Iterable[str | Path]) -> list[tuple[str, str]]:
    """(file name, text) for each YAML file given or found (sorted) in a directory given."""
    sources: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            problems.append(Problem(str(path), 1, 1, "", "no such file or directory"))
            continue
        for file in files:
            try:
                sources.append((str(file), file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(str(file), 1, 1, "", f"cannot read: {exc}"))
    if problems:
        raise ConfigError(problems)
    return sources


def load_config(
    paths: Iterable[str | Path], registry: AdapterRegistry | None = None, strict: bool = False
) -> CompiledConfig:
    """Read and compile config from files/directories; raise ConfigError listing every problem.

    What loading tells besides errors (skipped documents, warnings) is in the result's ``notes``.
    """
    return compile_config(read_sources(paths), registry or AdapterRegistry(), strict)

"""Find adapters through the ``mixer.adapters`` entry-point group, loading each once."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points

from mixer.sdk import Adapter

ENTRY_POINT_GROUP = "mixer.adapters"


class UnknownAdapter(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.message = f"unknown adapter {name!r} (known: {', '.join(known) or 'none'})"

    def __str__(self) -> str:
        return self.message


class AdapterRegistry:
    """Adapters by name: the installed entry points, plus ``extra`` ones (tests, embedding).

    An ``extra`` adapter shadows an installed one of the same name, so a test can put a fake
    behind a config document without touching the runtime's internals.
    """

    def __init__(self, extra: Mapping[str, Adapter] | None = None) -> None:
        self._loaded: dict[str, Adapter] = dict(extra or {})

    def names(self) -> list[str]:
        return sorted({*self._loaded, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})

    def get(self, name: str) -> Adapter:
        if name not in self._loaded:
            matches = entry_points(group=ENTRY_POINT_GROUP, name=name)
            if not matches:
                raise UnknownAdapter(name, self.names())
            factory = next(iter(matches)).load()
            self._loaded[name] = factory() if isinstance(factory, type) else factory
        return self._loaded[name]

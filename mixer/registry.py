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
    """Adapters by name: from entry points, or from an explicit mapping (tests, embedding)."""

    def __init__(self, adapters: Mapping[str, Adapter] | None = None) -> None:
        self._explicit = dict(adapters) if adapters is not None else None
        self._loaded: dict[str, Adapter] = {}

    def names(self) -> list[str]:
        if self._explicit is not None:
            return sorted(self._explicit)
        return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))

    def get(self, name: str) -> Adapter:
        if self._explicit is not None:
            if name in self._explicit:
                return self._explicit[name]
            raise UnknownAdapter(name, self.names())
        if name not in self._loaded:
            matches = entry_points(group=ENTRY_POINT_GROUP, name=name)
            if not matches:
                raise UnknownAdapter(name, self.names())
            factory = next(iter(matches)).load()
            self._loaded[name] = factory() if isinstance(factory, type) else factory
        return self._loaded[name]

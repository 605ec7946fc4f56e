"""HTTP headers: an ordered list of (name, value) pairs with case-insensitive lookups."""

from __future__ import annotations


class Headers:
    def __init__(self, pairs: list[tuple[str, str]] | None = None) -> None:
        self._pairs: list[tuple[str, str]] = list(pairs or [])

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self._pairs:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._pairs if key.lower() == wanted]

    def add(self, name: str, value: str) -> None:
        self._pairs.append((name, value))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        wanted = name.lower()
        self._pairs = [(k, v) for k, v in self._pairs if k.lower() != wanted]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

"""The public API: a parsed configuration with typed getters."""

from __future__ import annotations

from pathlib import Path

from cfgparse import values
from cfgparse.errors import ParseError
from cfgparse.interpolate import expand
from cfgparse.names import normalize
from cfgparse.parser import parse

MISSING = object()


class Config:
    def __init__(self, sections: dict[str, dict[str, str]]) -> None:
        self._sections = sections

    @classmethod
    def from_text(cls, text: str) -> Config:
        return cls(parse(text))

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        return cls.from_text(Path(path).read_text(encoding="utf-8"))

    def sections(self) -> list[str]:
        return [name for name in self._sections if name]

    def get(self, section: str, key: str, default=MISSING) -> str:
        section, key = normalize(section), normalize(key)
        try:
            raw = self._sections[section][key]
        except KeyError:
            if default is MISSING:
                raise ParseError(f"no key {key!r} in section [{section}]") from None
            return default
        return expand(self._sections, section, raw)

    def get_int(self, section: str, key: str, default=MISSING) -> int:
        return self._typed(values.as_int, section, key, default)

    def get_bool(self, section: str, key: str, default=MISSING) -> bool:
        return self._typed(values.as_bool, section, key, default)

    def get_list(self, section: str, key: str, default=MISSING) -> list[str]:
        return self._typed(values.as_list, section, key, default)

    def get_duration(self, section: str, key: str, default=MISSING) -> float:
        return self._typed(values.as_duration, section, key, default)

    def _typed(self, convert, section, key, default):
        raw = self.get(section, key, MISSING if default is MISSING else None)
        return default if raw is None else convert(raw)

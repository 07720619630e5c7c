"""Secret values as a job's environment and as the texts masked in its logs (no I/O, no crypto)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from pydantic import JsonValue

MASK = "***"
_NOT_ENV = re.compile(r"[^A-Z0-9_]")


def env_name(name: str) -> str:
    """``LEASEHOLD_SECRET_<NAME>``: the name upper-cased, any other character as ``_``."""
    return "LEASEHOLD_SECRET_" + _NOT_ENV.sub("_", name.upper())


def env_value(value: JsonValue) -> str:
    """A string secret as itself, an object secret as its JSON text."""
    # json, not orjson: an object may hold integers past 64 bits
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           ensure_ascii=False)


def masked_texts(values: Iterable[JsonValue]) -> list[str]:
    """The exact texts to hide: each string secret, each string leaf of an object secret (and
    its JSON text), longest first so a longer value is never left half masked."""
    found: set[str] = set()

    def walk(value: JsonValue) -> None:
        if isinstance(value, str):
            if value:
                found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for value in values:
        walk(value)
        if not isinstance(value, str):
            found.add(env_value(value))
    return sorted(found, key=lambda text: (-len(text), text))


def mask(text: str, texts: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``texts`` (longest first) replaced by ``***``."""
    for secret in texts:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class StreamMasker:
    """Masks one output stream that arrives in pieces: a value split over two pieces is still
    masked, because the end of a piece that could begin a value is held back until the next
    piece (or ``end()``). Only such a tail is held (at most the longest value minus one
    character), so output that cannot begin a secret is passed on at once."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = list(texts)
        self._held = ""

    def feed(self, piece: str) -> str:
        """What of ``piece`` (after what was held) can be passed on now, masked."""
        if not self.texts:
            return piece
        text = mask(self._held + piece, self.texts)
        cut = self._hold_from(text)
        self._held = text[cut:]
        return text[:cut]

    def end(self) -> str:
        """The held tail, at the end of the stream (it never completed a value)."""
        held, self._held = self._held, ""
        return held

    def _hold_from(self, text: str) -> int:
        """The start of the longest tail of ``text`` that is a proper prefix of a value."""
        longest = max(len(secret) for secret in self.texts) - 1
        for start in range(max(0, len(text) - longest), len(text)):
            tail = text[start:]
            if any(secret.startswith(tail) for secret in self.texts):
                return start
        return len(text)

"""JSON values kept as the exact text a caller sent: stored, read and served without re-encoding.

Payloads, metadata and outputs are opaque to the scheduler. Decoding them and encoding them
again loses information (integers beyond 2^53 or 2^64, ``1.10`` vs ``1.1``, ``1e400``, ``-0.0``),
so each one is a ``RawJson``: the bytes of that value exactly as they appeared in the request,
validated once at the edge, stored as is, and embedded as is in every reply.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

_WS = re.compile(r"[ \t\n\r]*")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (NaN and Infinity are not JSON)")


def _ignore(text: str) -> None:
    return None


# Finds where a value ends without building its numbers (no digit limit, no float rounding).
_SCAN = json.JSONDecoder(parse_int=_ignore, parse_float=_ignore, parse_constant=_refuse_constant)
_DECODE = json.JSONDecoder(parse_constant=_refuse_constant)


class RawJson:
    """One JSON value as text: ``text`` is served verbatim; ``value`` decodes it (exact ints)."""

    __slots__ = ("text",)
    kind = "value"

    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def of(cls, value: Any) -> RawJson:
        """The JSON text of a Python value (or of an already raw value, kept as is)."""
        if isinstance(value, RawJson):
            return cls(value.text)
        if isinstance(value, orjson.Fragment):
            contents = value.contents
            return cls(contents.decode() if isinstance(contents, bytes) else contents)
        return cls(encode(value))

    @property
    def value(self) -> Any:
        return _DECODE.decode(self.text)

    def is_object(self) -> bool:
        return self.text.lstrip(" \t\n\r")[:1] == "{"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawJson):
            return self.text == other.text
        return bool(self.value == other)

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, key: Any) -> Any:
        return self.value[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"

    @classmethod
    def _validate(cls, value: Any) -> RawJson:
        raw = cls.of(value)
        if cls.kind == "object" and not raw.is_object():
            raise ValueError("must be a JSON object")
        return raw

    @staticmethod
    def _serialize(value: RawJson, info: core_schema.SerializationInfo) -> Any:
        # JSON mode (model_dump_json) can only re-encode the decoded value; replies go through
        # ``fragments`` (orjson embeds the text as it is) instead.
        return value.value if info.mode_is_json() else value

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                cls._serialize, info_arg=True))

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "object"} if cls.kind == "object" else {}


class RawObject(RawJson):
    """A ``RawJson`` that must be a JSON object (metadata, outputs)."""

    __slots__ = ()
    kind = "object"


EMPTY_OBJECT = "{}"


def fragment(value: Any) -> Any:
    """orjson ``default``: embeds a RawJson's text verbatim; anything else is not JSON."""
    if isinstance(value, RawJson):
        return orjson.Fragment(value.text)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def encode(value: Any) -> str:
    """Compact JSON text of a Python value; integers of any size; NaN and Infinity refused."""
    try:
        return orjson.dumps(value, default=fragment).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: the standard library has no limit
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                              default=_plain)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot store this JSON value: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, RawJson):
        return value.value
    raise TypeError(f"cannot serialize {type(value).__name__}")


def loads_keeping(text: str | bytes, keep: frozenset[str]) -> Any:
    """Decodes like ``json.loads``, except that the value of an object member named in ``keep``
    (at any depth outside kept values) stays a ``RawJson`` of its exact text (``None`` for null).

    Raises ``ValueError`` (``json.JSONDecodeError`` for syntax) on anything that is not JSON,
    including NaN and Infinity.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value, end = _value(text, _skip(text, 0), keep)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _skip(text: str, idx: int) -> int:
    match = _WS.match(text, idx)
    return match.end() if match else idx


def _value(text: str, idx: int, keep: frozenset[str]) -> tuple[Any, int]:
    ch = text[idx:idx + 1]
    if ch == "{":
        return _object(text, _skip(text, idx + 1), keep)
    if ch == "[":
        return _array(text, _skip(text, idx + 1), keep)
    return _DECODE.raw_decode(text, idx)


def _object(text: str, idx: int, keep: frozenset[str]) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    if text[idx:idx + 1] == "}":
        return out, idx + 1
    while True:
        if text[idx:idx + 1] != '"':
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", text, idx)
        key, idx = json.decoder.scanstring(text, idx + 1)  # type: ignore[attr-defined]
        idx = _skip(text, idx)
        if text[idx:idx + 1] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, idx)
        idx = _skip(text, idx + 1)
        if key in keep:
            start = idx
            _, idx = _SCAN.raw_decode(text, idx)
            raw = text[start:idx]
            out[key] = None if raw == "null" else RawJson(raw)
        else:
            out[key], idx = _value(text, idx, keep)
        idx = _skip(text, idx)
        ch = text[idx:idx + 1]
        if ch == "}":
            return out, idx + 1
        if ch != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, idx)
        idx = _skip(text, idx + 1)


def _array(text: str, idx: int, keep: frozenset[str]) -> tuple[list[Any], int]:
    out: list[Any] = []
    if text[idx:idx + 1] == "]":
        return out, idx + 1
    while True:
        item, idx = _value(text, idx, keep)
        out.append(item)
        idx = _skip(text, idx)
        ch = text[idx:idx + 1]
        if ch == "]":
            return out, idx + 1
        if ch != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, idx)
        idx = _skip(text, idx + 1)


def decoded(raw: RawJson | None) -> Any:
    """The decoded value of an optional RawJson (None stays None)."""
    return None if raw is None else raw.value


def integral(value: Any) -> Any:
    """JSON has one number type: ``3.0`` is the integer 3 (as JSON Schema says), so a whole
    float becomes an int before strict validation (an int is accepted where a float is)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def as_json_reads(value: Any) -> Any:
    """Numbers as the JSON reader (orjson) gives them: an integer past 64 bits is a float."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    if isinstance(value, dict):
        return {key: as_json_reads(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json_reads(item) for item in value]
    return value

"""The event schema: one user–item interaction, and its validation.

An event is what producers write to the events topic, as a JSON object keyed by
user id. ``ts`` is event time in Unix seconds (a float is allowed). The same
contract is published as JSON Schema in ``streams/schemas/event.schema.json``;
a test checks that the two accept and reject the same messages.

Validation is strict and names the field and value on failure, because a
rejected message goes to the dead-letter topic with that reason and a producer
team has to act on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "MAX_ID_LENGTH",
    "MAX_TS_S",
    "Event",
    "InvalidEvent",
    "parse_event",
    "validate_event",
]

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating")
MAX_ID_LENGTH = 256
# Event time must fall in [MIN_TS_S, MAX_TS_S]: 1970-01-01 to 2100-01-01 UTC.
# A millisecond timestamp (about 1.7e12 today) lands above the bound on purpose.
MIN_TS_S = 0.0
MAX_TS_S = 4_102_444_800.0
MAX_VALUE = 1e12
_MISSING = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
_FIELDS = ("event_id", "user_id", "item_id", "type", "ts", "value", "category")
_REQUIRED = ("event_id", "user_id", "item_id", "type", "ts")


class InvalidEvent(ValueError):
    """A message that does not match the event schema.

    ``field`` names the offending field (``"$"`` for the message as a whole)
    and ``value`` is the value found there, shortened for display.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = _shorten(value)
        self.reason = reason
        if value is _MISSING:
            super().__init__(f"invalid event: required field {field!r} is missing")
        else:
            super().__init__(f"invalid event: field {field!r}, value {self.value}: {reason}")


@dataclass(frozen=True, slots=True)
class Event:
    """One interaction of a user with an item.

    Ids are strings: integer ids from producers are converted on parsing.
    ``value`` is the rating or the price when present.
    """

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    value: float | None = None
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form, leaving out optional fields that are unset."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "type": self.type,
            "ts": self.ts,
        }
        if self.value is not None:
            out["value"] = self.value
        if self.category is not None:
            out["category"] = self.category
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


def parse_event(raw: bytes | str) -> Event:
    """Decode one message value and validate it.

    Raises :class:`InvalidEvent` for bytes that are not UTF-8 JSON, for JSON
    that is not an object, and for every schema violation, non-finite numbers
    (``NaN``, ``Infinity``) included.

    >>> parse_event(b'{"event_id":"e1","user_id":7,"item_id":"i9","type":"view","ts":1.5}').user_id
    '7'
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent("$", raw, f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    else:
        text = raw
    try:
        # NaN and Infinity literals decode to floats here, so that the field
        # check below rejects them naming the field.
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent("$", text, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    return validate_event(obj)


def validate_event(obj: Any) -> Event:
    """Check a decoded JSON value against the event schema and build the :class:`Event`."""
    if not isinstance(obj, dict):
        raise InvalidEvent("$", obj, f"expected a JSON object, got {_json_type(obj)}")
    for name in _REQUIRED:
        if name not in obj:
            raise InvalidEvent(name, _MISSING, "required field is missing")
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        raise InvalidEvent(unknown[0], obj[unknown[0]], f"unknown field (allowed: {', '.join(_FIELDS)})")

    event_type = obj["type"]
    if event_type not in EVENT_TYPES:
        raise InvalidEvent("type", event_type, f"expected one of {', '.join(EVENT_TYPES)}")

    ts = _number(obj, "ts")
    if not MIN_TS_S <= ts <= MAX_TS_S:
        hint = " (milliseconds? divide by 1000)" if ts > MAX_TS_S else ""
        raise InvalidEvent("ts", obj["ts"], f"expected Unix seconds in [{MIN_TS_S:.0f}, {MAX_TS_S:.0f}]{hint}")

    value = None
    if obj.get("value") is not None:
        value = _number(obj, "value")
        if abs(value) > MAX_VALUE:
            raise InvalidEvent("value", obj["value"], f"expected a magnitude of at most {MAX_VALUE:g}")
    category = None
    if obj.get("category") is not None:
        category = _identifier(obj, "category")

    return Event(
        event_id=_identifier(obj, "event_id", allow_int=False),
        user_id=_identifier(obj, "user_id"),
        item_id=_identifier(obj, "item_id"),
        type=event_type,
        ts=ts,
        value=value,
        category=category,
    )


def _identifier(obj: dict[str, Any], name: str, allow_int: bool = True) -> str:
    value = obj[name]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        expected = "a string or an integer" if allow_int else "a string"
        raise InvalidEvent(name, value, f"expected {expected}, got {_json_type(value)}")
    if not value.strip():
        raise InvalidEvent(name, value, "expected a non-blank string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(name, value, f"expected at most {MAX_ID_LENGTH} characters, got {len(value)}")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(name, value, f"expected a number, got {_json_type(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidEvent(name, value, "expected a finite number")
    return number


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shorten(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Dead-letter messages: what a rejected event becomes on the DLQ topic.

The envelope keeps the original bytes exactly (base64), a readable copy when
they are UTF-8, the reason naming the field and value, and where the message
came from, so a producer team can find, fix and resend it. Its JSON Schema is
``streams/schemas/dead_letter.schema.json``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from streams.events import InvalidEvent

__all__ = ["dead_letter"]


def dead_letter(
    raw: bytes | None,
    error: InvalidEvent,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None = None,
    timestamp_ms: int | None = None,
    now: float | None = None,
) -> bytes:
    """Build the DLQ message value for a message rejected with ``error``.

    >>> from streams.events import InvalidEvent
    >>> out = json.loads(dead_letter(b"{", InvalidEvent("$", "{", "not valid JSON"),
    ...                              topic="t", partition=0, offset=7, now=0.0))
    >>> out["field"], out["source"]["offset"], out["original_base64"]
    ('$', 7, 'ew==')
    """
    raw = raw if raw is not None else b""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    envelope: dict[str, Any] = {
        "error": str(error),
        "field": error.field,
        "value": error.value,
        "reason": error.reason,
        "source": {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": _decode_key(key),
            "timestamp_ms": timestamp_ms,
        },
        "original": text,
        "original_base64": base64.b64encode(raw).decode("ascii"),
        "rejected_at": time.time() if now is None else now,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def _decode_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(key).decode("ascii")

"""Dead-letter envelopes keep the original bytes and say why and where."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema

from streams.deadletter import dead_letter
from streams.events import InvalidEvent, parse_event

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "streams" / "schemas" / "dead_letter.schema.json").read_text())


def _reject(raw: bytes) -> InvalidEvent:
    try:
        parse_event(raw)
    except InvalidEvent as error:
        return error
    raise AssertionError(f"{raw!r} was accepted")


def test_envelope_matches_schema():
    raw = b'{"event_id":"e","user_id":"u","item_id":"i","type":"nope","ts":1}'
    envelope = json.loads(dead_letter(raw, _reject(raw), topic="t", partition=2, offset=41, key=b"u", timestamp_ms=5))
    jsonschema.validate(envelope, SCHEMA)
    assert envelope["field"] == "type"
    assert envelope["source"] == {"topic": "t", "partition": 2, "offset": 41, "key": "u", "timestamp_ms": 5}


def test_original_bytes_kept_exactly():
    raw = b"\xff\x00 not json"
    envelope = json.loads(dead_letter(raw, _reject(raw), topic="t", partition=0, offset=0))
    assert base64.b64decode(envelope["original_base64"]) == raw
    assert envelope["original"] is None


def test_text_copy_when_utf8():
    raw = b'{"event_id":1,"user_id":"u","item_id":"i","type":"view","ts":1}'
    envelope = json.loads(dead_letter(raw, _reject(raw), topic="t", partition=0, offset=3))
    assert envelope["original"] == raw.decode()
    assert "event_id" in envelope["error"]


def test_none_value_becomes_empty():
    envelope = json.loads(dead_letter(None, InvalidEvent("$", None, "empty message"), topic="t", partition=0, offset=1))
    assert envelope["original_base64"] == ""

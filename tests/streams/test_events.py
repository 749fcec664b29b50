"""The event schema: validation errors name the field and value, and the JSON Schema agrees."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from streams.events import Event, InvalidEvent, parse_event

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "streams" / "schemas" / "event.schema.json").read_text())
VALID = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": 1_700_000_000.5}

# (name, message, field the error must name); None as field means the message is valid.
CASES = [
    ("minimal", VALID, None),
    ("integer ids", {**VALID, "user_id": 7, "item_id": 9}, None),
    ("with value and category", {**VALID, "type": "rating", "value": 4.5, "category": "c1"}, None),
    ("null optionals", {**VALID, "value": None, "category": None}, None),
    ("epoch zero", {**VALID, "ts": 0}, None),
    ("missing event_id", {k: v for k, v in VALID.items() if k != "event_id"}, "event_id"),
    ("missing item_id", {k: v for k, v in VALID.items() if k != "item_id"}, "item_id"),
    ("missing ts", {k: v for k, v in VALID.items() if k != "ts"}, "ts"),
    ("unknown type", {**VALID, "type": "wishlist"}, "type"),
    ("type not a string", {**VALID, "type": 3}, "type"),
    ("ts as string", {**VALID, "ts": "1700000000"}, "ts"),
    ("ts boolean", {**VALID, "ts": True}, "ts"),
    ("ts negative", {**VALID, "ts": -1}, "ts"),
    ("ts in milliseconds", {**VALID, "ts": 1_700_000_000_000}, "ts"),
    ("user_id list", {**VALID, "user_id": ["u1"]}, "user_id"),
    ("user_id float", {**VALID, "user_id": 1.5}, "user_id"),
    ("user_id blank", {**VALID, "user_id": "  "}, "user_id"),
    ("user_id too long", {**VALID, "user_id": "u" * 257}, "user_id"),
    ("event_id integer", {**VALID, "event_id": 5}, "event_id"),
    ("value string", {**VALID, "value": "5"}, "value"),
    ("value absurd", {**VALID, "value": 1e13}, "value"),
    ("category empty", {**VALID, "category": ""}, "category"),
    ("unknown field", {**VALID, "price": 3}, "price"),
    ("not an object", [VALID], "$"),
]


@pytest.mark.parametrize("name,message,field", CASES, ids=[case[0] for case in CASES])
def test_validation_names_field(name, message, field):
    raw = json.dumps(message).encode()
    if field is None:
        assert isinstance(parse_event(raw), Event)
        return
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.field == field
    assert repr(field) in str(caught.value)


@pytest.mark.parametrize("name,message,field", CASES, ids=[case[0] for case in CASES])
def test_json_schema_agrees(name, message, field):
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(message))
    assert (not errors) == (field is None), [e.message for e in errors]


def test_error_shows_bad_value():
    with pytest.raises(InvalidEvent) as caught:
        parse_event(json.dumps({**VALID, "type": "wishlist"}))
    assert "'wishlist'" in str(caught.value)
    assert "view, click, add_to_cart, purchase, rating" in str(caught.value)


@pytest.mark.parametrize("raw", [b"{", b"", b"null", b"\xff\xfe", b"[1, 2]"])
def test_undecodable_messages_rejected(raw):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.field == "$"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_ts_names_field(literal):
    raw = '{"event_id":"e","user_id":"u","item_id":"i","type":"view","ts":%s}' % literal
    with pytest.raises(InvalidEvent, match="finite") as caught:
        parse_event(raw)
    assert caught.value.field == "ts"


def test_non_finite_value_names_field():
    raw = '{"event_id":"e","user_id":"u","item_id":"i","type":"rating","ts":1,"value":NaN}'
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.field == "value"


def test_millisecond_hint():
    with pytest.raises(InvalidEvent, match="milliseconds"):
        parse_event(json.dumps({**VALID, "ts": 1_700_000_000_000}))


def test_round_trip_through_json():
    event = Event("e1", "u1", "i1", "purchase", 1.5, value=9.99, category="c")
    assert parse_event(event.to_json()) == event


def test_integer_ids_become_strings():
    event = parse_event(json.dumps({**VALID, "user_id": 42, "item_id": 7}))
    assert event.user_id == "42"
    assert event.item_id == "7"

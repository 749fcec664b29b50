"""Readers of public interaction logs, mapping their rows to events.

:func:`load_events` reads one log in a known format, turns each row into an
:class:`~streams.events.Event` checked by :func:`~streams.events.validate_event`,
and returns the events sorted by event time (Unix seconds). A row that cannot be
mapped is reported as a :class:`MalformedRow` and reading goes on.

Users and items keep the log's own ids, as strings. Where a log has sessions
but no user ids (Yoochoose, Diginetica, OTTO), the session id is the user id.
Each mapped event gets the id ``"{format}:{file name}:{line}"``, and an OTTO
event gets ``"otto:{file name}:{line}:{index}"``, where ``index`` is its 0-based
position in the session's ``events`` array. Events read in the ``"jsonl"``
format keep their own ``event_id``. Lines are 1-based file lines, header
included. Blank lines are skipped and not counted as rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from streams.delimited import (
    UNDECODABLE,
    Layout,
    LayoutError,
    Record,
    RowError,
    is_number,
    lookup,
    parse_date_utc_s,
    parse_iso_time_s,
    parse_number,
    peek_line,
    read_delimited,
)
from streams.events import MAX_ID_LENGTH, Event, InvalidEvent, parse_event, validate_event

__all__ = ["FORMATS", "LoadResult", "MalformedRow", "load_events"]

_log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("taobao", "movielens", "yoochoose", "diginetica", "otto", "retailrocket", "jsonl")

# Files looked for, in this order, when a MovieLens path is a directory.
MOVIELENS_RATING_FILES = ("ratings.csv", "ratings.dat", "u.data")
# An OTTO ``ts`` below this is read as Unix seconds, otherwise as milliseconds.
# 1e11 ms is 1973-03-03 and 1e11 s is the year 5138, so the two never overlap.
OTTO_SECONDS_BELOW = 1e11

# Taobao has no favourite type in the event schema. A favourite is a
# save-for-later signal, so it maps to add_to_cart.
_TAOBAO_TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"}
_OTTO_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}
_RETAILROCKET_TYPES = {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"}
# Room left in an event id for ":{line}:{index}", so that ids stay within MAX_ID_LENGTH.
_MAX_ID_PREFIX_LENGTH = MAX_ID_LENGTH - 32


@dataclass(frozen=True)
class MalformedRow:
    """A row that could not be mapped to an event, and why.

    ``line`` is the 1-based line in the file. ``reason`` names the column or
    field and the value found there.
    """

    path: str
    line: int
    reason: str


@dataclass
class LoadResult:
    """Events of one log in time order, the malformed rows, and the row count.

    ``n_rows`` counts every data row read, so for a whole file
    ``len(events) + len(malformed) == n_rows`` unless ``limit`` cut the events.
    In an OTTO file each event inside a session counts as a row, and a line
    that is not a valid session counts as one row.
    """

    events: list[Event]
    malformed: list[MalformedRow]
    n_rows: int


def load_events(path: str | Path, fmt: str, *, limit: int | None = None) -> LoadResult:
    """Read a whole interaction log and return its events sorted by ``ts``.

    The sort is stable, so events with equal ``ts`` keep their file order.
    ``limit`` keeps the first ``limit`` events of the sorted stream. The whole
    file is still read, because the logs are not in time order, and
    ``malformed`` and ``n_rows`` always cover the whole file.

    ``fmt`` is one of :data:`FORMATS`. For ``"movielens"``, ``path`` may be a
    directory containing one of :data:`MOVIELENS_RATING_FILES`. The layout of
    MovieLens and Yoochoose files is detected from the first line.

    Raises ``ValueError`` for an unknown ``fmt``, a negative ``limit``, a file
    name too long for event ids, or a header that lacks a required column.
    Raises ``FileNotFoundError`` when ``path`` does not exist or a MovieLens
    directory has no ratings file, and ``IsADirectoryError`` when ``path`` is a
    directory for another format. Logs one INFO line with the counts.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"invalid limit {limit}: expected None or a count >= 0")
    file_path = _resolve_path(Path(path), fmt)
    result = LoadResult(events=[], malformed=[], n_rows=0)
    id_prefix = f"{fmt}:{file_path.name}"
    if len(id_prefix) > _MAX_ID_PREFIX_LENGTH:
        raise ValueError(
            f"file name too long for event ids: {file_path.name!r} has {len(file_path.name)} characters, "
            f"expected at most {_MAX_ID_PREFIX_LENGTH - len(fmt) - 1}; rename the file"
        )

    # NOTE: bytes that are not UTF-8 become U+FFFD here, and the readers report
    # rows containing it as malformed instead of stopping on a decode error.
    with file_path.open(newline="", encoding="utf-8-sig", errors="replace") as stream:
        try:
            for record in _READERS[fmt](stream, id_prefix):
                result.n_rows += 1
                if record.event is not None:
                    result.events.append(record.event)
                else:
                    result.malformed.append(MalformedRow(str(file_path), record.line, record.reason))
        except LayoutError as exc:
            raise ValueError(f"cannot read {file_path} as {fmt}: {exc}") from exc

    result.events.sort(key=_event_ts)
    if limit is not None:
        del result.events[limit:]
    _log.info(
        "loaded events path=%s format=%s n_rows=%d n_events=%d n_malformed=%d",
        file_path, fmt, result.n_rows, len(result.events), len(result.malformed),
    )
    return result


def _resolve_path(path: Path, fmt: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"interaction log not found: {path}")
    if not path.is_dir():
        return path
    if fmt != "movielens":
        raise IsADirectoryError(f"expected a file for format {fmt!r}, got the directory {path}")
    for name in MOVIELENS_RATING_FILES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"no MovieLens ratings file in {path}: expected one of {', '.join(MOVIELENS_RATING_FILES)}")


def _event_ts(event: Event) -> float:
    return event.ts


# Format readers: each yields one Record per data row.


def _read_taobao(stream: TextIO, id_prefix: str) -> Iterator[Record]:
    columns = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
    return read_delimited(stream, id_prefix, Layout(",", columns, False, _taobao_fields))


def _taobao_fields(row: dict[str, str]) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "item_id": row["item_id"],
        "category": row["category_id"],
        "type": lookup(row, "behavior_type", _TAOBAO_TYPES),
        "ts": parse_number(row, "timestamp"),
    }


def _read_movielens(stream: TextIO, id_prefix: str) -> Iterator[Record]:
    """Read ``ratings.csv`` (header), ``ratings.dat`` (``::``) or ``u.data`` (tabs)."""
    first_line = peek_line(stream)
    columns = ("user_id", "movie_id", "rating", "timestamp")
    if "::" in first_line:
        layout = Layout("::", columns, False, _movielens_fields)
    elif "\t" in first_line:
        layout = Layout("\t", columns, False, _movielens_fields)
    else:
        has_header = not is_number(first_line.split(",", 1)[0])
        layout = Layout(",", columns, has_header, _movielens_fields)
    return read_delimited(stream, id_prefix, layout)


def _movielens_fields(row: dict[str, str]) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "item_id": row["movie_id"],
        "type": "rating",
        "value": parse_number(row, "rating"),
        "ts": parse_number(row, "timestamp"),
    }


def _read_yoochoose(stream: TextIO, id_prefix: str) -> Iterator[Record]:
    """Read the prepared TSV (header ``SessionId``, ``ItemId``, ``Time``) or an original ``.dat`` file.

    Of the original comma-separated files, ``yoochoose-clicks.dat`` has 4
    columns and ``yoochoose-buys.dat`` has 5, and neither has a header.
    """
    first_line = peek_line(stream)
    if "\t" in first_line:
        layout = Layout("\t", ("session_id", "item_id", "time"), True, _yoochoose_prepared_fields)
    elif first_line.count(",") == 4:
        columns = ("session_id", "timestamp", "item_id", "price", "quantity")
        layout = Layout(",", columns, False, _yoochoose_buy_fields)
    else:
        columns = ("session_id", "timestamp", "item_id", "category")
        layout = Layout(",", columns, False, _yoochoose_click_fields)
    return read_delimited(stream, id_prefix, layout)


def _yoochoose_prepared_fields(row: dict[str, str]) -> dict[str, Any]:
    return {"user_id": row["session_id"], "item_id": row["item_id"], "type": "click", "ts": parse_number(row, "time")}


def _yoochoose_click_fields(row: dict[str, str]) -> dict[str, Any]:
    # The category is kept as the string found, such as "0", "S" (a special
    # offer) or a number.
    return {
        "user_id": row["session_id"],
        "item_id": row["item_id"],
        "type": "click",
        "ts": parse_iso_time_s(row, "timestamp"),
        "category": row["category"],
    }


def _yoochoose_buy_fields(row: dict[str, str]) -> dict[str, Any]:
    # The quantity is not part of the event schema and is dropped.
    return {
        "user_id": row["session_id"],
        "item_id": row["item_id"],
        "type": "purchase",
        "ts": parse_iso_time_s(row, "timestamp"),
        "value": parse_number(row, "price"),
    }


def _read_diginetica(stream: TextIO, id_prefix: str) -> Iterator[Record]:
    """Read ``train-item-views.csv``, taking the session as the user.

    The registered ``user_id`` column is dropped because most rows have ``NA``
    there. The log has no time of day, only the date and the milliseconds since
    the session started, so ``ts`` is midnight UTC of ``eventdate`` plus
    ``timeframe / 1000``.
    """
    columns = ("session_id", "item_id", "timeframe", "eventdate")
    return read_delimited(stream, id_prefix, Layout(";", columns, True, _diginetica_fields))


def _diginetica_fields(row: dict[str, str]) -> dict[str, Any]:
    day_start_s = parse_date_utc_s(row, "eventdate")
    return {
        "user_id": row["session_id"],
        "item_id": row["item_id"],
        "type": "view",
        "ts": day_start_s + parse_number(row, "timeframe") / 1000.0,
    }


def _read_retailrocket(stream: TextIO, id_prefix: str) -> Iterator[Record]:
    """Read ``events.csv``, whose ``timestamp`` is in Unix milliseconds."""
    columns = ("timestamp", "visitor_id", "event", "item_id")
    return read_delimited(stream, id_prefix, Layout(",", columns, True, _retailrocket_fields))


def _retailrocket_fields(row: dict[str, str]) -> dict[str, Any]:
    return {
        "user_id": row["visitor_id"],
        "item_id": row["item_id"],
        "type": lookup(row, "event", _RETAILROCKET_TYPES),
        "ts": parse_number(row, "timestamp") / 1000.0,
    }


def _read_otto(stream: TextIO, id_prefix: str) -> Iterator[Record]:
    """Read OTTO sessions, one JSON object per line, each event its own row.

    The official data stores ``ts`` in milliseconds. Copies converted to
    seconds are read too, because a ``ts`` below :data:`OTTO_SECONDS_BELOW` is
    taken as seconds.
    """
    for line_number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            session, events = _otto_session(line)
        except RowError as exc:
            yield Record(line_number, None, str(exc))
            continue
        for index, raw in enumerate(events):
            try:
                fields = _otto_fields(session, raw)
                fields["event_id"] = f"{id_prefix}:{line_number}:{index}"
                yield Record(line_number, validate_event(fields))
            except (RowError, InvalidEvent) as exc:
                yield Record(line_number, None, f"event {index}: {exc}")


def _otto_session(line: str) -> tuple[Any, list[Any]]:
    if UNDECODABLE in line:
        raise RowError("line contains bytes that are not valid UTF-8")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RowError(f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict) or "session" not in obj or not isinstance(obj.get("events"), list):
        raise RowError(f"expected an object with 'session' and an 'events' array, got {_shorten(obj)}")
    return obj["session"], obj["events"]


def _otto_fields(session: Any, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not {"aid", "ts", "type"} <= raw.keys():
        raise RowError(f"expected an object with 'aid', 'ts' and 'type', got {_shorten(raw)}")
    ts = raw["ts"]
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and ts >= OTTO_SECONDS_BELOW:
        ts = ts / 1000.0
    event_type = _OTTO_TYPES.get(raw["type"]) if isinstance(raw["type"], str) else None
    if event_type is None:
        raise RowError(f"field 'type': unknown value {_shorten(raw['type'])} (expected one of {', '.join(_OTTO_TYPES)})")
    return {"user_id": session, "item_id": raw["aid"], "type": event_type, "ts": ts}


def _read_jsonl(stream: TextIO, id_prefix: str) -> Iterator[Record]:
    """Read events in streamrank's own schema, keeping their own ``event_id``."""
    for line_number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if UNDECODABLE in line:
            yield Record(line_number, None, "line contains bytes that are not valid UTF-8")
            continue
        try:
            yield Record(line_number, parse_event(line))
        except InvalidEvent as exc:
            yield Record(line_number, None, str(exc))


_READERS: dict[str, Callable[[TextIO, str], Iterator[Record]]] = {
    "taobao": _read_taobao,
    "movielens": _read_movielens,
    "yoochoose": _read_yoochoose,
    "diginetica": _read_diginetica,
    "otto": _read_otto,
    "retailrocket": _read_retailrocket,
    "jsonl": _read_jsonl,
}


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

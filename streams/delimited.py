"""Rows of delimited interaction logs: splitting, header mapping and value parsing.

This module contains the steps that :mod:`streams.formats` shares between its
CSV, TSV and ``::``-separated readers. Each row becomes a :class:`Record` that
contains either a validated :class:`~streams.events.Event` or the reason the
row is malformed. Lines are 1-based file lines, header included.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple, TextIO

from streams.events import Event, InvalidEvent, validate_event

__all__ = [
    "UNDECODABLE",
    "Layout",
    "LayoutError",
    "Record",
    "RowError",
    "is_number",
    "lookup",
    "parse_date_utc_s",
    "parse_iso_time_s",
    "parse_number",
    "peek_line",
    "read_delimited",
]

# The replacement character that decoding with errors="replace" puts in place
# of bytes that are not valid UTF-8.
UNDECODABLE = "\ufffd"


class Record(NamedTuple):
    """One row's outcome: the event, or the reason the row is malformed."""

    line: int
    event: Event | None
    reason: str = ""


class RowError(ValueError):
    """A row value that cannot be mapped. The message names the column and value."""


class LayoutError(ValueError):
    """A file whose header does not fit the format."""


@dataclass(frozen=True)
class Layout:
    """A delimited file layout: delimiter, columns, and the row-to-fields mapping.

    With a header, ``columns`` are the required columns, found by name in any
    order. Without one, they are all the columns, in file order. ``to_fields``
    maps a row keyed by ``columns`` to the input of
    :func:`~streams.events.validate_event` without ``event_id``, and raises
    :class:`RowError` for a value it cannot map.
    """

    delimiter: str
    columns: tuple[str, ...]
    has_header: bool
    to_fields: Callable[[dict[str, str]], dict[str, Any]]


def read_delimited(stream: TextIO, id_prefix: str, layout: Layout) -> Iterator[Record]:
    """Yield a :class:`Record` per data row, with the event id ``f"{id_prefix}:{line}"``.

    Blank lines are skipped. Raises :class:`LayoutError` when the header lacks
    a required column.
    """
    rows = _split_rows(stream, layout.delimiter)
    positions = list(range(len(layout.columns)))
    n_columns = len(layout.columns)
    if layout.has_header:
        header = next(rows, None)
        if header is None:
            return
        positions = _header_positions(header[1], layout.columns)
        n_columns = len(header[1])

    for line_number, cells in rows:
        if cells == [] or cells == [""]:
            continue
        try:
            fields = _map_row(cells, positions, n_columns, layout)
            fields["event_id"] = f"{id_prefix}:{line_number}"
            yield Record(line_number, validate_event(fields))
        except (RowError, InvalidEvent) as exc:
            yield Record(line_number, None, str(exc))


def peek_line(stream: TextIO) -> str:
    """Return the first line of the file and rewind the stream to its start."""
    first_line = stream.readline()
    stream.seek(0)
    return first_line


# Value parsers: each raises RowError naming the column and the value.


def parse_number(row: dict[str, str], column: str) -> float:
    text = row[column]
    try:
        number = float(text)
    except ValueError:
        raise RowError(f"column {column!r}: expected a number, got {text!r}") from None
    if not math.isfinite(number):
        raise RowError(f"column {column!r}: expected a finite number, got {text!r}")
    return number


def lookup(row: dict[str, str], column: str, mapping: dict[str, str]) -> str:
    """Map a column's value through ``mapping``, such as a log's event types to ours."""
    text = row[column]
    if text not in mapping:
        raise RowError(f"column {column!r}: unknown value {text!r} (expected one of {', '.join(mapping)})")
    return mapping[text]


def parse_iso_time_s(row: dict[str, str], column: str) -> float:
    """Parse an ISO 8601 time such as ``2014-04-07T10:51:09.277Z`` to Unix seconds.

    A time without an offset is taken as UTC.
    """
    text = row[column]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"column {column!r}: expected an ISO 8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_date_utc_s(row: dict[str, str], column: str) -> float:
    """Parse a ``YYYY-MM-DD`` date to the Unix seconds of its midnight UTC."""
    text = row[column]
    try:
        return _midnight_utc_s(text)
    except ValueError:
        raise RowError(f"column {column!r}: expected a YYYY-MM-DD date, got {text!r}") from None


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _map_row(cells: list[str], positions: list[int], n_columns: int, layout: Layout) -> dict[str, Any]:
    if len(cells) != n_columns:
        names = ", ".join(layout.columns)
        expected = f"{n_columns} columns (including {names})" if layout.has_header else f"{n_columns} columns ({names})"
        raise RowError(f"expected {expected}, got {len(cells)}")
    if any(UNDECODABLE in cell for cell in cells):
        raise RowError("row contains bytes that are not valid UTF-8")
    row = {name: cells[position] for name, position in zip(layout.columns, positions)}
    return layout.to_fields(row)


def _split_rows(stream: TextIO, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield each row with its 1-based line.

    The csv module accepts only 1-character delimiters, so ``::`` rows are split with ``str.split``.
    """
    if len(delimiter) == 1:
        reader = csv.reader(stream, delimiter=delimiter)
        for cells in reader:
            yield reader.line_num, cells
    else:
        for line_number, line in enumerate(stream, start=1):
            yield line_number, line.rstrip("\r\n").split(delimiter)


def _header_positions(header: list[str], required: tuple[str, ...]) -> list[int]:
    """Find each required column in the header, ignoring case and underscores."""
    keys = [_column_key(name) for name in header]
    positions = []
    for name in required:
        if _column_key(name) not in keys:
            raise LayoutError(f"header {header} lacks the column {name!r} (required: {', '.join(required)})")
        positions.append(keys.index(_column_key(name)))
    return positions


def _column_key(name: str) -> str:
    """Normalise a column name, so ``sessionId`` and ``session_id`` match."""
    return name.strip().lower().replace("_", "")


# A log has far fewer distinct dates than rows, so each date is parsed once.
@functools.lru_cache(maxsize=4096)
def _midnight_utc_s(text: str) -> float:
    day = datetime.strptime(text, "%Y-%m-%d")
    return day.replace(tzinfo=timezone.utc).timestamp()

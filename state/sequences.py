"""Per-user interaction sequences, over any key-value mapping.

A user's state is their last ``max_seq_len`` interactions (item id, event
type, event time), the items they purchased, and the ids of their recent
events so that a redelivered event is not appended twice. It is stored as a
JSON-ready dict under the user id, so the same code runs over a Faust table
(RocksDB through rocksdict, changelogged to Kafka), a rocksdict ``Rdict``
opened directly (:class:`RocksDBMapping`), or a plain dict.

Item ids, not embedding rows, are stored: the state stays valid when the
model and its vocabulary are replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.events import Event

__all__ = ["UserSequence", "SequenceStore", "RocksDBMapping", "MAX_PURCHASED"]

# Purchases kept per user for exclusion from recommendations, newest last.
MAX_PURCHASED = 500


@dataclass
class UserSequence:
    """A user's recent interactions, oldest first, and what they purchased."""

    items: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    purchased: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    n_events: int = 0

    def __len__(self) -> int:
        return len(self.items)

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.event_ids

    def append(self, event: Event, max_seq_len: int) -> None:
        """Add ``event`` at the end and drop what falls out of the window."""
        self.items.append(event.item_id)
        self.types.append(event.type)
        self.ts.append(event.ts)
        self.event_ids.append(event.event_id)
        del self.items[:-max_seq_len]
        del self.types[:-max_seq_len]
        del self.ts[:-max_seq_len]
        del self.event_ids[:-max_seq_len]
        if event.type == "purchase" and event.item_id not in self.purchased:
            self.purchased.append(event.item_id)
            del self.purchased[:-MAX_PURCHASED]
        self.n_events += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "types": self.types,
            "ts": self.ts,
            "purchased": self.purchased,
            "event_ids": self.event_ids,
            "n_events": self.n_events,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserSequence:
        return cls(
            items=list(data.get("items", ())),
            types=list(data.get("types", ())),
            ts=[float(t) for t in data.get("ts", ())],
            purchased=list(data.get("purchased", ())),
            event_ids=list(data.get("event_ids", ())),
            n_events=int(data.get("n_events", 0)),
        )


class SequenceStore:
    """Read and write :class:`UserSequence` values in a mapping keyed by user id.

    Writes go through ``mapping[user_id] = dict``: on a Faust table that also
    produces the change to the table's changelog topic.
    """

    def __init__(self, mapping: MutableMapping[str, Any], max_seq_len: int) -> None:
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be at least 1, got {max_seq_len}")
        self.mapping = mapping
        self.max_seq_len = max_seq_len

    def get(self, user_id: str) -> UserSequence:
        """Return the user's sequence, empty for a user never seen."""
        data = self.mapping.get(user_id)
        return UserSequence() if data is None else UserSequence.from_dict(data)

    def put(self, user_id: str, sequence: UserSequence) -> None:
        self.mapping[user_id] = sequence.to_dict()

    def append(self, event: Event) -> tuple[UserSequence, UserSequence, bool]:
        """Append ``event`` to its user's sequence and store it.

        Returns ``(before, after, appended)``. A redelivered event, one whose
        ``event_id`` is among the user's recent ids, leaves the state as it is
        and returns ``appended=False``.
        """
        before = self.get(event.user_id)
        if before.has_seen(event.event_id):
            return before, before, False
        after = UserSequence.from_dict(before.to_dict())
        after.append(event, self.max_seq_len)
        self.put(event.user_id, after)
        return before, after, True


class RocksDBMapping(MutableMapping[str, Any]):
    """A rocksdict database on disk seen as a mapping of str keys to JSON values.

    Used where state lives outside a Faust worker (the evaluation harness and
    tests); a Faust table plays the same role inside the worker.
    """

    def __init__(self, path: str | Path) -> None:
        from rocksdict import Options, Rdict

        Path(path).mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options)

    def __getitem__(self, key: str) -> Any:
        raw = self._db.get(key.encode())
        if raw is None:
            raise KeyError(key)
        return json.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self._db.put(key.encode(), json.dumps(value, separators=(",", ":")).encode())

    def __delitem__(self, key: str) -> None:
        if self._db.get(key.encode()) is None:
            raise KeyError(key)
        self._db.delete(key.encode())

    def __iter__(self) -> Iterator[str]:
        for key in self._db.keys():
            yield key.decode()

    def __len__(self) -> int:
        return sum(1 for _ in self._db.keys())

    def close(self) -> None:
        self._db.close()

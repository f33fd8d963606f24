"""The durable inbound spool: a small SQLite file in CONNECTOR_STATE_DIR.

A program writes a platform message here before it acknowledges anything upstream (a cursor, an
event id), and the inbox removes it only once chatbox has answered 2xx. `put` returns after the
commit is on disk (WAL, synchronous=FULL), so a crash right after it loses nothing. Messages are
keyed by `external_message_id`: putting the same one again is a no-op, so a platform that replays
events after a reconnect does not queue a message twice.

The key/value state beside it holds the program's cursors (Signal's last SSE event id, Discord's
last message id per channel); `put(..., state=...)` moves a cursor in the same transaction as the
message it acknowledges.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    message TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SpooledMessage:
    key: str
    message: dict[str, Any]
    added_at: float


class Spool:
    """An ordered, idempotent queue of normalized messages plus a small key/value state, in one SQLite file.

    Methods are synchronous and short (one local transaction each), safe to call from the event loop
    and from threads.
    """

    FILENAME = "spool.sqlite3"

    def __init__(self, path: Path) -> None:
        """`path` is the SQLite file, or a folder to keep `spool.sqlite3` in."""
        self.path = path / self.FILENAME if path.is_dir() else path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the commit reaches the disk before put() returns, which is what lets a program ack upstream.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def put(self, message: Mapping[str, Any], *, state: Mapping[str, str] | None = None) -> bool:
        """Keep `message` (keyed by its `external_message_id`) until `done`; True when it was new.

        `state` entries are written in the same transaction, e.g. the event id this message came with.
        """
        key = message.get("external_message_id")
        if not isinstance(key, str) or not key:
            raise ValueError("a spooled message needs a string external_message_id")
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO spool (key, message, added_at) VALUES (?, ?, ?)", (key, body, time.time())
                )
                for name, value in (state or {}).items():
                    self._set_state(name, value)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cursor.rowcount == 1

    def pending(self, limit: int = 100) -> list[SpooledMessage]:
        """The oldest `limit` messages not yet `done`, in arrival order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, message, added_at FROM spool ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [SpooledMessage(key, json.loads(message), added_at) for key, message, added_at in rows]

    def done(self, key: str) -> None:
        """chatbox has it (or it can never pass): forget it."""
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE key = ?", (key,))

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM spool").fetchone()
        return int(n)

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._set_state(key, value)

    def _set_state(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

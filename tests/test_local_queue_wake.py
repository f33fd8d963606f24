"""The local queue's wake-up: a datagram to the consumer's socket on every call, through one socket the queue
keeps, and harmless when no consumer listens."""

from __future__ import annotations

import gc
import socket
from pathlib import Path

from chatbox.adapters.local_queue import LocalQueue
from chatbox.store.database import Database


def test_each_wake_reaches_the_listening_consumer(tmp_path: Path) -> None:
    path = tmp_path / "queue.wake"
    database = Database(f"sqlite:///{tmp_path / 'chatbox.db'}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        listener.bind(str(path))
        listener.settimeout(10)
        queue = LocalQueue(database, wake_path=path)

        for _ in range(3):
            queue.wake()

        assert [listener.recv(16) for _ in range(3)] == [b"1", b"1", b"1"]
    finally:
        listener.close()
        database.dispose()


def test_a_wake_with_no_consumer_listening_is_harmless(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chatbox.db'}")
    try:
        queue = LocalQueue(database, wake_path=tmp_path / "nobody.wake")
        queue.wake()
        queue.wake()
        del queue
        gc.collect()  # its socket closes with it: an unclosed one would warn, and warnings fail the suite
    finally:
        database.dispose()

"""Running a live source (`chatbox.ports.live`) in a test: a sink that keeps what it accepted, and a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from chatbox.domain.normalized import InboundMessage
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.live import LiveSource


class ListSink:
    """An InboundSink over lists: `refuse` makes the next accepts raise (nothing committed), as a database
    that is down would; `refuse = -1` refuses every one."""

    def __init__(self, cursor: str | None = None, *, refuse: int = 0, gate: threading.Event | None = None) -> None:
        self.gate = gate  # when given, accept waits (bounded) for it, so a test can look in between
        self.entered = threading.Event()
        self.messages: list[InboundMessage] = []
        self.saved: list[str] = []
        self.refused = 0
        self.refuse = refuse
        self._cursor = cursor
        self._lock = threading.Lock()

    def accept(self, messages: Sequence[InboundMessage]) -> None:
        self.entered.set()
        if self.gate is not None and not self.gate.wait(10):
            raise RuntimeError("the test never opened the gate")
        with self._lock:
            if self.refuse:
                self.refuse -= 1 if self.refuse > 0 else 0
                self.refused += 1
                raise RuntimeError("the database is down")
            self.messages.extend(messages)  # every accept kept, duplicates included, so tests can count them

    def cursor(self) -> str | None:
        with self._lock:
            return self._cursor

    def save_cursor(self, value: str) -> None:
        with self._lock:
            self._cursor = value
            self.saved.append(value)

    def ids(self) -> list[str]:
        with self._lock:
            return [message.external_message_id for message in self.messages]


@dataclass
class RunningSource:
    thread: threading.Thread
    stop: threading.Event
    errors: list[BaseException] = field(default_factory=list)

    def finish(self, timeout: float = 5.0) -> None:
        """Sets stop and waits (bounded) for `run` to return."""
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the source did not return within {timeout}s of stop"


@contextmanager
def running_source(source: LiveSource, ctx: ConnectionContext, sink: ListSink) -> Iterator[RunningSource]:
    """`source.run` on a thread for the block; stopped (and joined, bounded) after it."""
    stop = threading.Event()
    running = RunningSource(threading.Thread(target=lambda: None), stop)

    def run() -> None:
        try:
            source.run(ctx, sink, stop)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            running.errors.append(exc)

    running.thread = threading.Thread(target=run, name="live-source", daemon=True)
    running.thread.start()
    try:
        yield running
    finally:
        running.finish()

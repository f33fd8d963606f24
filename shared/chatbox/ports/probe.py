"""The optional probe hook of a connector: `chatbox doctor` asks each active connection's platform whether it
works, without the core naming any platform.

A connector that can check a connection implements `check(ctx, ingest_url=...) -> list[ProbeResult]` (for
example a getMe against the platform); `probe_of(connector)` finds it. A check never raises for what it finds:
a refused token or an unreachable platform is a `fail` result naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from chatbox.ports.connector import ConnectionContext

ProbeStatus = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class ProbeResult:
    """One line of a check: `what` was checked, its status, what was found, and what to do about it."""

    what: str
    status: ProbeStatus
    detail: str
    fix: str = ""


@runtime_checkable
class ConnectionProbe(Protocol):
    def check(self, ctx: ConnectionContext, *, ingest_url: str) -> list[ProbeResult]:
        """Check one active connection against its platform; `ingest_url` is where chatbox expects its events."""
        ...


def probe_of(connector: object) -> ConnectionProbe | None:
    """The connector's probe hook, or None when it has none."""
    return connector if isinstance(connector, ConnectionProbe) else None


@runtime_checkable
class QueueProbe(Protocol):
    def check_reachable(self) -> list[ProbeResult]:
        """Whether the queue answers (a queue in the database needs no probe beyond the database's)."""
        ...

"""Running a container program: JSON-line logs with the secrets redacted, signals, and an orderly stop.

`run(main, settings)` configures logging, runs `main(stop)` until it returns, and exits 0; SIGTERM or
SIGINT sets `stop`. `Relay` is the part every program's `main` holds open: the spool, the inbox and
the `/v1/send` + `/healthz` server. Leaving it stops accepting connections, waits for the sends in
flight and the inbox's current POST (both bounded), and closes the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, NoReturn, Self

from aiohttp import web

from connectors.relay.inbox import Inbox
from connectors.relay.media import MediaHandlers
from connectors.relay.server import ActionHandler, HealthCheck, SendHandler, SendServer
from connectors.relay.settings import RelaySettings
from connectors.relay.spool import Spool

log = logging.getLogger("connectors.relay")

DRAIN_SECONDS = 10.0
REDACTED = "[redacted]"
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line; `extra=` fields become keys. Every secret is replaced in the finished line,
    so neither a message, a field nor a traceback can carry one out."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(
            {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS and key[:1] != "_"}
        )
        if record.exc_info:
            line["error"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        text = json.dumps(line, ensure_ascii=False, default=str)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED).replace(json.dumps(secret)[1:-1], REDACTED)
        return text


def configure_logging(secrets: Iterable[str] = (), level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats every request; the send handler logs what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Relay:
    """The spool, the inbox and the HTTP server of one program, started and stopped together.

    Example:
        ```python
        async with Relay(settings, send=send, health=health) as relay:
            await relay.inbox.submit(message)
            await stop.wait()
        ```
    """

    def __init__(
        self,
        settings: RelaySettings,
        *,
        send: SendHandler,
        health: HealthCheck,
        media: MediaHandlers | None = None,
        actions: dict[str, ActionHandler] | None = None,
    ) -> None:
        self.settings = settings
        self.spool = Spool(settings.connector_state_dir)
        self.inbox = Inbox(settings, self.spool)
        self.server = SendServer(settings.chatbox_outbound_auth.get_secret_value(), send, health, actions, media=media)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.server.app(), access_log=None, shutdown_timeout=DRAIN_SECONDS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.connector_host, self.settings.connector_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.inbox.start()
        log.info(
            "listening",
            extra={"host": self.settings.connector_host, "port": self.port, "spooled": self.spool.count()},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        log.info("stopping: draining sends in flight and the inbox", extra={"in_flight": self.server.in_flight})
        if self._runner is not None:
            # Stops listening first, then waits up to shutdown_timeout for the handlers still running.
            await self._runner.cleanup()
            self._runner = None
        await self.inbox.close(DRAIN_SECONDS)
        log.info("stopped", extra={"spooled": self.spool.count()})
        self.spool.close()


Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def run(main: Main, settings: RelaySettings) -> NoReturn:
    """Run `main(stop)` with JSON logging (the settings' secrets redacted); exit 0 when it returns.

    SIGTERM or SIGINT sets `stop`; a second one cancels `main`. An exception out of `main` is logged
    and exits 1.
    """
    configure_logging(settings.secret_values())
    try:
        asyncio.run(_supervise(main))
    except Exception:
        log.exception("the program failed")
        raise SystemExit(1) from None
    logging.shutdown()
    raise SystemExit(0)


async def _supervise(main: Main) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(main(stop), name="main")
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: cancelling", extra={"signal": signal.Signals(signum).name})
            task.cancel()
            return
        log.info("signal received: stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

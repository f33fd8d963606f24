"""The live host: every platform's receive that chatbox runs itself, beside the API.

Every couple of seconds it compares the active connections with what it runs, and
- starts a `LiveSource` thread (`chatbox.ports.live`) for each connection whose platform has one and whose
  `receive_mode` chose it (Telegram `getUpdates`, Slack Socket Mode), feeding a `ConnectionSink`;
- starts `python -m <program.module>` for each managed container connection (Signal, Discord:
  `chatbox.services.connector_programs`), its output lines logged as `[signal conn_…] …`, redacted;
- stops both when the connection is archived, and everything when the process stops (SIGTERM to each
  child, a bounded wait, then SIGKILL).
Both restart with capped exponential backoff. A source that raises `PlatformRefusedError` (a refused token)
is logged once and tried again only after `refused_retry` seconds, not in a tight loop.

It runs in the process that serves the API (`chatbox dev`, `chatbox api`), not in the delivery worker or a
child of its own: on SQLite, this process already owns the one writer thread and the in-process write lock
the ingest routes take (`Database.write_lock_for`), so a source's accepts queue behind the routes' instead of
contending for SQLite's file lock from a third process, and the local queue's wake-up after commit works
the same. Sources spend their time blocked in a long poll or a socket read and children are other
processes, so the ingest hot path loses nothing measurable to them. Lambda never runs it: webhooks only.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from types import TracebackType
from typing import Any

from sqlalchemy import select

from chatbox.domain.errors import PlatformRefusedError
from chatbox.domain.redaction import redact, register_secrets
from chatbox.domain.schemas import ConnectionStatus
from chatbox.domain.settings import Settings
from chatbox.ports.live import RECEIVE_MODE, WEBHOOK_RECEIVE
from chatbox.runtime import Runtime
from chatbox.services.connections import connection_context, get_connection, report_connection_error
from chatbox.services.connector_programs import ProgramLaunch, is_managed, program_launch
from chatbox.services.live_inbound import RECEIVE_CURSOR, ConnectionSink
from chatbox.store.models import Connection

log = logging.getLogger(__name__)
program_log = logging.getLogger("chatbox.connectors")

# What a connector program inherits from chatbox's environment; nothing else (chatbox's own CHATBOX_* settings
# hold the vault key and the database URL).
INHERITED_VARIABLES = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "JAVA_HOME",
)  # fmt: skip


def free_loopback_port() -> int:
    """A port nothing listens on at 127.0.0.1 now, for a new managed connector's `/v1/send`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_api_url(settings: Settings) -> str:
    """Where a program on this machine reaches chatbox: the served address, on loopback when it listens on all."""
    host = settings.api_host
    if host in ("", "0.0.0.0"):  # noqa: S104 - reading the setting, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def program_environment(launch: ProgramLaunch, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """The program's whole environment: the harmless part of ours, then the contract's and the platform's."""
    source = os.environ if inherited is None else inherited
    env = {name: source[name] for name in INHERITED_VARIABLES if name in source}
    env["PYTHONUNBUFFERED"] = "1"  # its log lines reach ours as they are written
    env.update(launch.env)
    return env


class Backoff:
    """1 s, 2 s, 4 s … up to `cap`; back to the start after a run that lasted `healthy_after` seconds."""

    def __init__(self, first: float = 1.0, cap: float = 60.0, healthy_after: float = 60.0) -> None:
        self.first, self.cap, self.healthy_after = first, cap, healthy_after
        self._next = first

    def after_run(self, lasted: float) -> float:
        if lasted >= self.healthy_after:
            self._next = self.first
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay


class _Runner:
    """A thread doing one connection's work until `stop()`."""

    kind = "runner"

    def __init__(self, runtime: Runtime, connection_id: str, platform: str) -> None:
        self.runtime = runtime
        self.connection_id = connection_id
        self.platform = platform
        self.stopping = threading.Event()
        self.version = ""  # the connection's settings it runs with (LiveHost restarts it when they change)
        self.thread = threading.Thread(target=self._run, name=f"{self.kind}-{connection_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("the %s of connection %s did not stop within %gs", self.kind, self.connection_id, timeout)

    def _run(self) -> None:
        raise NotImplementedError


class SourceRunner(_Runner):
    """Runs one connection's `LiveSource`, restarting it with backoff."""

    kind = "live-source"

    def __init__(self, runtime: Runtime, connection_id: str, platform: str, *, refused_retry: float = 300.0) -> None:
        super().__init__(runtime, connection_id, platform)
        self.refused_retry = refused_retry
        self.sink = ConnectionSink(runtime.db, runtime.queue, connection_id)

    def _run(self) -> None:
        backoff = Backoff()
        refused_before = False
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                source = self.runtime.platforms.live_source(self.platform)
                if source is None:
                    log.error(
                        "platform %s has no live source here; connection %s waits", self.platform, self.connection_id
                    )
                    self.stopping.wait(self.refused_retry)
                    continue
                with self.runtime.db.session() as db:
                    ctx = connection_context(db, self.runtime.vault, get_connection(db, None, self.connection_id))
                register_secrets(ctx.secrets.values())
                log.info(
                    "receiving %s connection %s (%s)", self.platform, self.connection_id, ctx.config.get(RECEIVE_MODE)
                )
                source.run(ctx, self.sink, self.stopping)
                refused_before = False
            except PlatformRefusedError as exc:
                # It cannot work until someone changes it: say so once, and look again rarely.
                if not refused_before:
                    _report_connection_error(self.runtime, self.connection_id, exc.message)
                    log.warning(
                        "%s refused connection %s: %s; retrying every %gs (fix its credentials, or archive it)",
                        self.platform, self.connection_id, exc.message, self.refused_retry,
                    )  # fmt: skip
                refused_before = True
                self.stopping.wait(self.refused_retry)
                continue
            except Exception:  # noqa: BLE001 - a source's failure must not end the host; it restarts
                log.exception("the live source of %s connection %s failed", self.platform, self.connection_id)
            if self.stopping.is_set():
                return
            delay = backoff.after_run(time.monotonic() - started)
            log.info("restarting the live source of connection %s in %gs", self.connection_id, delay)
            self.stopping.wait(delay)


class ProgramRunner(_Runner):
    """Runs one managed connection's program as a child process, restarting it with backoff."""

    kind = "program"

    def __init__(
        self, runtime: Runtime, connection_id: str, platform: str, *, api_url: str, stop_timeout: float
    ) -> None:
        super().__init__(runtime, connection_id, platform)
        self.api_url = api_url
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running child's process id (None between runs)."""
        with self._lock:
            process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def _launch(self) -> ProgramLaunch:
        with self.runtime.db.session() as db:
            launch = program_launch(
                db,
                self.runtime.vault,
                self.runtime.platforms,
                self.connection_id,
                api_url=self.api_url,
                home=self.runtime.settings.home,
            )
        register_secrets(launch.secrets)
        return launch

    def _run(self) -> None:
        backoff = Backoff()
        reported = False
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                launch = self._launch()
                returncode = self._run_once(launch)
            except Exception:  # noqa: BLE001 - cannot start it now: try again after a pause
                log.exception("cannot start the program of %s connection %s", self.platform, self.connection_id)
                returncode = None
            if self.stopping.is_set():
                return
            lasted = time.monotonic() - started
            if lasted >= backoff.healthy_after:
                reported = False  # it had been working: a new failure is news again
            if not reported:
                _report_connection_error(
                    self.runtime, self.connection_id, f"its {self.platform} connector program exited ({returncode})"
                )
                reported = True
            delay = backoff.after_run(lasted)
            log.warning(
                "the %s program of connection %s exited (%s); restarting it in %gs",
                self.platform, self.connection_id, returncode, delay,
            )  # fmt: skip
            self.stopping.wait(delay)

    def _run_once(self, launch: ProgramLaunch) -> int:
        launch.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-m", launch.module],
            env=program_environment(launch),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C on chatbox's terminal reaches chatbox, which then stops it in order (SIGTERM).
            start_new_session=True,
        )
        with self._lock:
            self._process = process
        log.info("started the %s program of connection %s (pid %d)", self.platform, self.connection_id, process.pid)
        pump = threading.Thread(target=self._pump, args=(process,), name=f"output-{self.connection_id}", daemon=True)
        pump.start()
        try:
            while process.poll() is None and not self.stopping.wait(0.2):
                pass
            if process.poll() is None:
                _terminate(process, self.stop_timeout)
            return process.wait()
        finally:
            pump.join(timeout=2)
            if process.stdout is not None:
                process.stdout.close()
            with self._lock:
                self._process = None

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        prefix = f"[{self.platform} {self.connection_id}]"
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                program_log.info("%s %s", prefix, redact(line))


def _report_connection_error(runtime: Runtime, connection_id: str, error: str) -> None:
    """A `connection_error` service event for the account's integrators; never fails the runner."""
    try:
        with runtime.db.session() as db:
            report_connection_error(db, get_connection(db, None, connection_id), error)
    except Exception:  # noqa: BLE001 - the event is news, not a duty: the log line stays
        log.warning("could not record a connection_error event for connection %s", connection_id, exc_info=True)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, a bounded wait for it to drain, then SIGKILL."""
    with suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("program pid %d did not stop within %gs of SIGTERM; killing it", process.pid, timeout)
        process.kill()
        process.wait()


class LiveHost:
    """Runs the live sources and managed programs of the active connections, until `stop()` (or the `with` ends).

    Args:
        api_url: where programs reach chatbox (`local_api_url`; `chatbox connector run --api-url` elsewhere).
        interval: seconds between two looks at the connections.
        refused_retry: seconds before a refused source is tried again.
        stop_timeout: how long a program may take to stop after SIGTERM before it is killed.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        api_url: str,
        interval: float = 1.5,
        refused_retry: float = 300.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.runtime = runtime
        self.api_url = api_url
        self.interval = interval
        self.refused_retry = refused_retry
        self.stop_timeout = stop_timeout
        self.sources: dict[str, SourceRunner] = {}
        self.programs: dict[str, ProgramRunner] = {}
        self._retiring: list[_Runner] = []  # stopped on archive, still finishing: waited for at shutdown
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._reconcile_forever, name="live-host", daemon=True)

    def __enter__(self) -> LiveHost:
        self.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop looking, then stop every source and program (in parallel) and wait for them, bounded."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        runners = [*self.sources.values(), *self.programs.values(), *self._retiring]
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join(self.stop_timeout + 5)
        self.sources.clear()
        self.programs.clear()
        self._retiring.clear()

    def _reconcile_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - the database may be restarting: look again next round
                log.warning("cannot read the connections to receive; trying again", exc_info=True)
            self._stopping.wait(self.interval)

    def reconcile(self) -> None:
        """One look: start what the active connections want, stop what no active connection wants."""
        wanted_sources: dict[str, tuple[str, str]] = {}
        wanted_programs: dict[str, tuple[str, str]] = {}
        for connection_id, platform, config, version in self._active_connections():
            spec = self.runtime.platforms.get(platform)
            if spec is None:
                continue
            if spec.live_source is not None and _chose_live_receive(config):
                wanted_sources[connection_id] = (platform, version)
            if spec.program is not None and is_managed(config):
                wanted_programs[connection_id] = (platform, version)
        if self._stopping.is_set():
            return
        self._retiring = [runner for runner in self._retiring if runner.thread.is_alive()]
        for connection_id, (platform, version) in wanted_sources.items():
            running = self.sources.get(connection_id)
            if running is not None and running.version != version:
                # A rotated token or a changed config: the running source holds the old ones.
                log.info("connection %s changed; restarting its live source", connection_id)
                self._retire(self.sources.pop(connection_id))
                running = None
            if running is None:
                source = SourceRunner(self.runtime, connection_id, platform, refused_retry=self.refused_retry)
                source.version = version
                self.sources[connection_id] = source
                source.start()
        for connection_id, (platform, version) in wanted_programs.items():
            running_program = self.programs.get(connection_id)
            if running_program is not None and running_program.version != version:
                log.info("connection %s changed; restarting its program", connection_id)
                self._retire(self.programs.pop(connection_id))
                running_program = None
            if running_program is None:
                program = ProgramRunner(
                    self.runtime, connection_id, platform, api_url=self.api_url, stop_timeout=self.stop_timeout
                )
                program.version = version
                self.programs[connection_id] = program
                program.start()
        for gone in [c for c in self.sources if c not in wanted_sources]:
            log.info("connection %s is no longer active; stopping its live source", gone)
            self._retire(self.sources.pop(gone))
        for gone in [c for c in self.programs if c not in wanted_programs]:
            log.info("connection %s is no longer active; stopping its program", gone)
            self._retire(self.programs.pop(gone))  # its supervisor thread sends SIGTERM and waits

    def _retire(self, runner: _Runner) -> None:
        runner.stop()
        self._retiring.append(runner)

    def _active_connections(self) -> Iterator[tuple[str, str, dict[str, Any], str]]:
        """Each active connection's id, platform, config and version (what a running source or program was
        started with: its config but the source's own cursor, and its secrets' credential ids)."""
        with self.runtime.db.session() as db:
            rows = db.execute(
                select(Connection.id, Connection.platform, Connection.config, Connection.secret_refs).where(
                    Connection.status == ConnectionStatus.active
                )
            ).all()
        for row in rows:
            config = dict(row.config or {})
            settled = {key: value for key, value in config.items() if key != RECEIVE_CURSOR}
            version = json.dumps([settled, row.secret_refs or {}], sort_keys=True, default=str)
            yield row.id, row.platform, config, version


def _chose_live_receive(config: Mapping[str, Any]) -> bool:
    # A connection without `receive_mode` predates live receive: it was registered for webhooks.
    mode = config.get(RECEIVE_MODE)
    return isinstance(mode, str) and bool(mode) and mode != WEBHOOK_RECEIVE

"""Serving helpers for `chatbox api` and `chatbox dev` (uvicorn is imported only here)."""

from __future__ import annotations

import copy
import gc
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any

import uvicorn
import uvicorn.config

from chatbox.adapters.prometheus_metrics import enable_multiprocess, multiprocess_enabled
from chatbox.asgi import create_app
from chatbox.domain.redaction import RedactingFilter
from chatbox.runtime import Runtime
from chatbox.services import accounts
from chatbox.store.migrate import upgrade_to_head

log = logging.getLogger(__name__)


def prepare_dev_home(runtime: Runtime) -> accounts.IssuedKey | None:
    """Migrate, share metrics with the worker child (an empty `<home>/metrics`: see
    `chatbox.adapters.prometheus_metrics`) and, on first start, create the first account. Returns the new
    key, or None if one existed. Call before starting the worker."""
    enable_multiprocess(runtime.settings.home / "metrics")
    upgrade_to_head(runtime.db.engine)
    with runtime.db.session() as db:
        return accounts.bootstrap(db, api_key=runtime.settings.bootstrap_api_key or None)


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with a `RedactingFilter` on each of its handlers: an access line
    names the request's path and query (`?token=…` is redacted), an error line may hold anything."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {**config.get("filters", {}), "redact": {"()": RedactingFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "redact"]
    return config


def serve(runtime: Runtime, *, workers: int = 1, app_factory: str = "") -> None:
    """Serve the app until SIGINT or SIGTERM; either unwinds normally, so a `with` around this cleans up.

    With `workers` > 1, uvicorn runs that many processes on the one socket, each building its own runtime and
    app by calling `app_factory` (an import string: `module:function`, read from the environment this process
    passes on); this process supervises them (restarting one that dies) and keeps what must run once, such as
    the live host. Their metrics go to the multiprocess folder, enabled here if the caller did not.
    """
    settings = runtime.settings
    # uvicorn re-raises the signal it caught once it has shut down; with the default SIGTERM action that
    # would kill the process before the caller's cleanup (stopping the worker child) runs.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": settings.log_level.lower(),
        "log_config": uvicorn_log_config(),
        # A line per request costs about a twentieth of an ingest's CPU; metrics count requests anyway.
        "access_log": access_log_enabled(settings.log_level),
        "proxy_headers": True,
    }
    if workers > 1:
        if not app_factory:
            raise ValueError("several workers need an app factory to import")
        if not multiprocess_enabled():
            enable_multiprocess(settings.home / "metrics")
        # A worker that misses uvicorn's health pings that long is killed and replaced; a spawned worker
        # imports everything afresh, which on a busy machine takes longer than uvicorn's 5 s.
        uvicorn.run(app_factory, factory=True, workers=workers, timeout_worker_healthcheck=30, **options)
        return
    app = create_app(runtime)
    freeze_startup_objects()
    uvicorn.run(app, **options)


def freeze_startup_objects() -> None:
    """Move what start-up made (modules, the app, SQLAlchemy's metadata) out of the cyclic collector's sight:
    they live as long as the process, and every full collection would walk them again (a few percent of an
    ingest's CPU, and a pause of tens of milliseconds under load)."""
    gc.collect()
    gc.freeze()


def access_log_enabled(log_level: str) -> bool:
    """uvicorn's access log is on only at DEBUG."""
    return log_level.upper() == "DEBUG"


class WorkerProcess:
    """`chatbox worker` as a child process, restarted if it dies, stopped with its parent.

    Args:
        options: passed to `chatbox worker` (`chatbox dev` passes `--dev`, so the worker reads its settings
            with the same defaults as the process serving the API).
    """

    def __init__(self, options: Sequence[str] = (), restart_delay: float = 1.0) -> None:
        self.options = list(options)
        self.restart_delay = restart_delay
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    def __enter__(self) -> WorkerProcess:
        self._spawn()
        self._supervisor.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _spawn(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "chatbox.cli.main", "worker", *self.options])

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is not None and process.poll() is not None and not self._stopping.is_set():
                log.warning("delivery worker exited with %s; restarting it", process.returncode)
                self._stopping.wait(self.restart_delay)
                if not self._stopping.is_set():
                    self._spawn()
            self._stopping.wait(0.5)

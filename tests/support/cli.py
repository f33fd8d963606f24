"""Running the real `chatbox` executable of this virtualenv as a subprocess, or its commands in this process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

CHATBOX = Path(sys.executable).parent / "chatbox"
T = TypeVar("T")


def clean_env(**chatbox_vars: str) -> dict[str, str]:
    """This process's environment without any CHATBOX_* variable, plus the ones given (`api_port=...`)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CHATBOX_")}
    env.update({f"CHATBOX_{name.upper()}": value for name, value in chatbox_vars.items()})
    # As a user's shell would run it: output block-buffered into pipes, and the default terminal width.
    for name in ("COLUMNS", "PYTHONUNBUFFERED"):
        env.pop(name, None)
    return env


def run_chatbox(*args: str, env: Mapping[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHATBOX), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll `probe` until it returns something, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(0.05)


def invoke_chatbox(*args: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`chatbox ARGS` run in this process by typer's CliRunner, answering as `run_chatbox` does.

    For tests of what a command does (its output, exit code and effect on the database): a `chatbox` process
    spends about 0.6 s of CPU importing before it does anything. What only a process shows stays with
    `run_chatbox`: the entry point, signals, a terminal's width and colours (rich reads them when the CLI is
    imported). The command sees `env` as its whole environment, `cwd` as its working directory, and a root
    logger without handlers (as a fresh process has), so its own logging set-up writes to the stderr it
    answers; all of it is put back afterwards. An exception that would print a traceback fails the test.
    """
    from typer.testing import CliRunner

    from chatbox.cli.main import app

    overrides: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    overrides.update(env)
    root = logging.getLogger()
    handlers, factory, levels = root.handlers[:], logging.getLogRecordFactory(), _logger_levels()
    here = Path.cwd()
    root.handlers.clear()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env=overrides, catch_exceptions=False, prog_name="chatbox")
    finally:
        os.chdir(here)
        for added in root.handlers:
            added.close()
        root.handlers[:] = handlers
        logging.setLogRecordFactory(factory)
        # The levels the command set for its process (the root's, the libraries' it quiets) are put back.
        for name in _logger_levels():
            logging.getLogger(name or None).setLevel(levels.get(name, logging.NOTSET))
    return subprocess.CompletedProcess(["chatbox", *args], result.exit_code, result.stdout, result.stderr)


def _logger_levels() -> dict[str, int]:
    """Every logger's own level, by name ("" for the root)."""
    found = logging.Logger.manager.loggerDict.items()
    return {"": logging.getLogger().level} | {n: lg.level for n, lg in found if isinstance(lg, logging.Logger)}

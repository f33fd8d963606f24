"""Running the real `chatbox` executable of this virtualenv as a subprocess."""

from __future__ import annotations

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

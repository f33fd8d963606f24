"""Cleanup that happens even when the test process dies without running its finalizers.

A killed pytest-xdist worker (the controller interrupted, a timeout, SIGKILL) runs no fixture
teardown, so a Postgres server or a `chatbox dev` it started would run on forever. A lifeline is a
small watchdog process blocked on a pipe that only the test process holds open: when that process
ends, however it ends, the kernel closes the pipe and the watchdog cleans up. No polling.

Run as a script, this file is the watchdog: its argument is the JSON cleanup spec.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

KILL_GRACE_SECONDS = 10


class Lifeline:
    """Cleanup that runs when `release()` is called or when this process ends, whichever comes first."""

    def __init__(
        self, *, kill_group: int | None = None, command: Sequence[str] = (), remove: Path | None = None
    ) -> None:
        spec = {"kill_group": kill_group, "command": list(command), "remove": str(remove) if remove else None}
        read_end, self._write_end = os.pipe()  # not inheritable: no other child keeps the pipe open
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, json.dumps(spec)],  # stdlib only: starts in ms
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the terminal's process group must not stop the cleanup
            )
        finally:
            os.close(read_end)

    def release(self, timeout: float = 60) -> None:
        """Clean up now and wait until it is done."""
        os.close(self._write_end)
        self._watchdog.wait(timeout=timeout)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)  # raises once the whole group is gone
            time.sleep(0.05)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _watch(spec: dict[str, object]) -> None:
    sys.stdin.buffer.read()  # returns at EOF: the test process released the lifeline, or ended
    if isinstance(spec["kill_group"], int):
        _kill_group(spec["kill_group"])
    command = spec["command"]
    if isinstance(command, list) and command:
        subprocess.run([str(part) for part in command], capture_output=True, timeout=60, check=False)
    if isinstance(spec["remove"], str):
        shutil.rmtree(spec["remove"], ignore_errors=True)


if __name__ == "__main__":
    _watch(json.loads(sys.argv[1]))

"""Cleanup that happens even when the test process dies without running its finalizers.

A killed pytest-xdist worker (its controller interrupted, SIGKILL) runs no fixture teardown, so a
Postgres server it started would run on forever. A lifeline is a small watchdog process blocked on
a pipe that only the test process holds open: when that process ends, however it ends, the kernel
closes the pipe and the watchdog cleans up. No polling.

Run as a script, this file is the watchdog: its argument is the JSON cleanup spec.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


class Lifeline:
    """Cleanup that runs when `release()` is called or when this process ends, whichever comes first."""

    def __init__(self, *, command: Sequence[str] = (), remove: Path | None = None) -> None:
        spec = {"command": list(command), "remove": str(remove) if remove else None}
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


def _watch(spec: dict[str, object]) -> None:
    sys.stdin.buffer.read()  # returns at EOF: the test process released the lifeline, or ended
    command = spec["command"]
    if isinstance(command, list) and command:
        subprocess.run([str(part) for part in command], capture_output=True, timeout=60, check=False)
    if isinstance(spec["remove"], str):
        shutil.rmtree(spec["remove"], ignore_errors=True)


if __name__ == "__main__":
    _watch(json.loads(sys.argv[1]))

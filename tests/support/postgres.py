"""A real, throwaway PostgreSQL server for the test suite (about a second to start, no Docker).

`pg_ctl` refuses to run as root, so as root the server runs as the `postgres` system user on a
folder it owns. Each pytest-xdist worker starts its own: its own folder (data, log, Unix socket)
and its own port, held from the moment it is chosen until the server listens on it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.lifeline import Lifeline
from tests.support.ports import reserved_port


def find_bindir() -> Path:
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for bindir in candidates:
        if bindir and (Path(bindir) / "initdb").exists():
            return Path(bindir)
    raise RuntimeError("PostgreSQL server binaries not found: `make test` installs them (apt-get install postgresql)")


@dataclass
class PostgresServer:
    folder: Path
    port: int
    bindir: Path
    lifeline: Lifeline

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(_command(self.bindir, *args), capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def start(self) -> None:
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "log"), "-w", "-t", "30", "-o", options, "start")

    def stop(self) -> None:
        """Stop the server and remove its folder (the lifeline does both, now)."""
        self.lifeline.release()


def _command(bindir: Path, program: str, *args: str) -> list[str]:
    command = [str(bindir / program), *args]
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start_postgres(label: str = "main") -> PostgresServer:
    """Start a server in a fresh folder on a free port; `label` (the xdist worker id) names the folder.

    Its lifeline stops it and removes the folder when `stop()` is called, and also when this process
    dies without running its finalizers, so an interrupted run leaves no server behind.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"chatbox-pg-{label}-"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    bindir = find_bindir()
    stop = _command(bindir, "pg_ctl", "-D", str(folder / "data"), "-m", "immediate", "-w", "stop")
    lifeline = Lifeline(command=stop, remove=folder)
    with reserved_port() as port:
        server = PostgresServer(folder=folder, port=port, bindir=bindir, lifeline=lifeline)
        try:
            server.start()
        except BaseException:
            server.stop()  # a half-started server must not outlive the attempt
            raise
    return server

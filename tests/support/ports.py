"""Free 127.0.0.1 ports for servers the suite cannot start on port 0 (Postgres, `chatbox dev`).

Picking a port and closing it leaves a window in which another xdist worker, another suite on the
same machine or an outgoing connection can take it before the server binds it. `reserved_port`
closes that window: the port stays bound, with SO_REUSEADDR and without listening, until the block
ends. Meanwhile the kernel hands it to no other `bind(("127.0.0.1", 0))` and no outgoing
connection, yet a server that binds it with SO_REUSEADDR (Postgres and uvicorn both do) can take it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def reserved_port() -> Iterator[int]:
    """A free 127.0.0.1 port, held for this process until the block ends: start the server inside it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])

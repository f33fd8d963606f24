"""The parrot program (see the package docstring)."""

from __future__ import annotations

import hmac
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _post_greeting(api_url: str, connection_id: str, token: str, greeting: str) -> None:
    pid = os.getpid()
    body = {"external_chat_id": "room-1", "external_message_id": f"hello-{pid}", "text": f"{greeting} from pid {pid}"}
    request = urllib.request.Request(
        f"{api_url}/v1/connections/{connection_id}/messages",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - the chatbox URL it was given
                print(f"greeted chatbox: HTTP {answer.status}", flush=True)  # noqa: T201 - a program's log line
                return
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                print(f"cannot greet chatbox: {exc}", flush=True)  # noqa: T201
                return
            time.sleep(0.2)


def main() -> None:
    env = os.environ
    state_dir = Path(env["CONNECTOR_STATE_DIR"])
    outbound_auth = env["CHATBOX_OUTBOUND_AUTH"]
    sent = state_dir / "sent.jsonl"

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(200, {"ok": True, "pid": os.getpid()})

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            presented = self.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(presented.encode(), outbound_auth.encode()):
                self._answer(401, {"code": "unauthorized", "message": "wrong bearer"})
                return
            with sent.open("a") as handle:
                handle.write(body.decode() + "\n")
            self._answer(200, {"message_id": f"sent-{os.getpid()}-{time.monotonic_ns()}"})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(
        (env.get("CONNECTOR_HOST", "0.0.0.0"), int(env.get("CONNECTOR_PORT", "8080"))), Handler
    )  # noqa: S104
    signal.signal(signal.SIGTERM, lambda _signum, _frame: threading.Thread(target=server.shutdown).start())
    (state_dir / "pid").write_text(str(os.getpid()))
    print(f"parrot listening on {server.server_address[1]}; outbound bearer {outbound_auth}", flush=True)  # noqa: T201
    greeter = threading.Thread(
        target=_post_greeting,
        args=(
            env["CHATBOX_API_URL"],
            env["CHATBOX_CONNECTION_ID"],
            env["CHATBOX_INBOUND_TOKEN"],
            env["PARROT_GREETING"],
        ),
        daemon=True,
    )
    greeter.start()
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    print("parrot stopped", flush=True)  # noqa: T201
    sys.exit(0)


if __name__ == "__main__":
    main()

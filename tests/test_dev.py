"""`chatbox dev` from an empty folder: zero set-up, one process, a key printed once, data kept."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from standardwebhooks import Webhook

from tests.support.cli import CHATBOX, clean_env, wait_for
from tests.support.pipeline import new_signing_secret
from tests.support.plugins import platform_plugin
from tests.support.ports import reserved_port
from tests.support.receiver import running_receiver

STARTUP_SECONDS = 60
BOOTSTRAP_KEY = "dev-bootstrap-key-for-the-e2e-test-0001"
KEY_LINE = re.compile(r"^API key \(shown once, keep it safe\): (\S+)$", re.MULTILINE)


@dataclass
class DevRun:
    base_url: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text()

    def errors(self) -> str:
        return self.stderr.read_text()

    def printed_keys(self) -> list[str]:
        return KEY_LINE.findall(self.output())


def _health(base_url: str, process: subprocess.Popen[bytes], run: DevRun) -> bool | None:
    if process.poll() is not None:
        raise AssertionError(f"chatbox dev exited with {process.returncode}:\n{run.output()}\n{run.errors()}")
    try:
        response = httpx.get(f"{base_url}/health", timeout=2)
    except httpx.TransportError:
        return None
    return True if response.status_code == 200 else None


@contextmanager
def chatbox_dev(
    workdir: Path, name: str, *options: str, pythonpath: str | None = None, **chatbox_vars: str
) -> Iterator[DevRun]:
    """Start `chatbox dev` in `workdir`, wait until /health answers, and always stop it afterwards."""
    with reserved_port() as port:  # held until chatbox dev listens on it, so no other worker can take it first
        env = clean_env(api_port=str(port), **chatbox_vars)
        if pythonpath is not None:
            env["PYTHONPATH"] = pythonpath
        run = DevRun(f"http://127.0.0.1:{port}", workdir.parent / f"{name}.out", workdir.parent / f"{name}.err")
        with run.stdout.open("wb") as stdout, run.stderr.open("wb") as stderr:
            process = subprocess.Popen(
                [str(CHATBOX), "dev", *options], cwd=workdir, env=env, stdout=stdout, stderr=stderr
            )
            try:
                wait_for(
                    lambda: _health(run.base_url, process, run), timeout=STARTUP_SECONDS, what="chatbox dev /health"
                )
                yield run
            finally:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)


def _workdir(tmp_path: Path) -> Path:
    workdir = tmp_path / "project"
    workdir.mkdir()
    return workdir


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_dev_sets_up_an_empty_folder_and_serves_with_the_printed_key(tmp_path: Path) -> None:
    workdir = _workdir(tmp_path)

    with chatbox_dev(workdir, "first") as run:
        health = httpx.get(f"{run.base_url}/health", timeout=5)
        [key] = run.printed_keys()
        listed = httpx.get(f"{run.base_url}/v1/mailboxes", headers=_bearer(key), timeout=5)
        refused = httpx.get(f"{run.base_url}/v1/mailboxes", headers=_bearer("cbk_wrong"), timeout=5)

    assert health.json() == {"status": "ok", "database": "ok", "schema": "ok"}
    assert listed.status_code == 200, listed.text
    assert refused.status_code == 401
    home = workdir / ".chatbox"
    key_file = home / "vault.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip()
    assert (home / "chatbox.db").exists()
    assert "generated a vault key" in run.errors()
    assert key not in run.errors()
    assert "alembic" not in run.errors()


def test_dev_restart_keeps_data_and_prints_no_new_key(tmp_path: Path) -> None:
    workdir = _workdir(tmp_path)
    with chatbox_dev(workdir, "first") as first:
        [key] = first.printed_keys()
        created = httpx.post(f"{first.base_url}/v1/mailboxes", json={"name": "agent"}, headers=_bearer(key), timeout=5)
    vault_key = (workdir / ".chatbox" / "vault.key").read_text()

    with chatbox_dev(workdir, "second") as second:
        listed = httpx.get(f"{second.base_url}/v1/mailboxes", headers=_bearer(key), timeout=5)

    assert created.status_code == 201, created.text
    assert second.printed_keys() == []
    assert "cbk_" not in second.output()
    assert "generated a vault key" not in second.errors()
    assert (workdir / ".chatbox" / "vault.key").read_text() == vault_key
    assert listed.status_code == 200, listed.text
    assert [mailbox["id"] for mailbox in listed.json()["items"]] == [created.json()["id"]]


def test_dev_uses_the_chosen_bootstrap_key(tmp_path: Path) -> None:
    chosen = "cbk_dev-chosen-key-0123456789abcdefghijkl"

    with chatbox_dev(_workdir(tmp_path), "chosen", bootstrap_api_key=chosen) as run:
        listed = httpx.get(f"{run.base_url}/v1/mailboxes", headers=_bearer(chosen), timeout=5)

    assert run.printed_keys() == [chosen]
    assert listed.status_code == 200, listed.text


def test_dev_delivers_an_inbound_message_to_a_local_webhook_through_its_worker(tmp_path: Path) -> None:
    """The whole one-process runtime: API, durable local queue, the worker child, a signed POST."""
    secret = new_signing_secret()
    with (
        running_receiver() as receiver,
        chatbox_dev(_workdir(tmp_path), "e2e", bootstrap_api_key=BOOTSTRAP_KEY) as run,
        httpx.Client(base_url=run.base_url, headers=_bearer(BOOTSTRAP_KEY), timeout=10) as api,
    ):
        credential = api.post("/v1/credentials", json={"name": "sig", "kind": "hmac_signing", "value": secret})
        mailbox = api.post(
            "/v1/mailboxes",
            json={"name": "agent", "webhook_url": receiver.url, "signing_credential_id": credential.json()["id"]},
        )
        assert mailbox.status_code == 201, mailbox.text  # loopback webhooks are allowed under chatbox dev
        # A connector the operator runs (with config.outbound_url; without it chatbox dev would run the program).
        connection = api.post(
            f"/v1/mailboxes/{mailbox.json()['id']}/connections",
            json={"platform": "signal", "config": {"outbound_url": "http://127.0.0.1:9/v1/send"}},
        ).json()

        accepted = httpx.post(
            f"{run.base_url}/v1/connections/{connection['id']}/messages",
            json={"external_chat_id": "+15550001", "external_message_id": "1700000000000", "text": "hello agent"},
            headers=_bearer(connection["inbound_token"]),
        )
        assert accepted.status_code == 202, accepted.text
        [request] = receiver.wait_for(1, timeout=30)

    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["chat_id"] == "signal:+15550001"
    assert payload["message"]["text"] == "hello agent"


def test_dev_follows_a_dotenv_line_refusing_loopback_webhooks(tmp_path: Path) -> None:
    """The loopback default is a setting's default, so `.env` can turn it off (an exported variable once beat it)."""
    workdir = _workdir(tmp_path)
    (workdir / ".env").write_text("CHATBOX_ALLOW_LOOPBACK_WEBHOOKS=0\n")

    with chatbox_dev(workdir, "no-loopback", bootstrap_api_key=BOOTSTRAP_KEY) as run:
        refused = httpx.post(
            f"{run.base_url}/v1/mailboxes",
            json={"name": "agent", "webhook_url": "http://127.0.0.1:9/hook"},
            headers=_bearer(BOOTSTRAP_KEY),
            timeout=5,
        )

    assert refused.status_code == 422, refused.text


def test_dev_runs_a_managed_connections_program_and_leaves_no_child_behind(tmp_path: Path) -> None:
    """One command: a container connection created without outbound_url gets its program started by chatbox dev,
    which posts inbound that reaches the agent; stopping chatbox dev stops the program too."""
    workdir = _workdir(tmp_path)
    pythonpath = platform_plugin(tmp_path, parrot="tests.platforms.parrot.spec:SPEC")
    with (
        running_receiver() as receiver,
        chatbox_dev(workdir, "managed", bootstrap_api_key=BOOTSTRAP_KEY, pythonpath=pythonpath) as run,
        httpx.Client(base_url=run.base_url, headers=_bearer(BOOTSTRAP_KEY), timeout=10) as api,
    ):
        mailbox = api.post("/v1/mailboxes", json={"name": "agent", "webhook_url": receiver.url})
        created = api.post(
            f"/v1/mailboxes/{mailbox.json()['id']}/connections",
            json={"platform": "parrot", "config": {"greeting": "hi"}},
        )
        assert created.status_code == 201, created.text
        [request] = receiver.wait_for(1, timeout=60)
        pid_file = workdir / ".chatbox" / "connectors" / created.json()["id"] / "pid"
        pid = int(wait_for(lambda: pid_file.read_text() if pid_file.exists() else None, timeout=10, what="pid"))

    assert request.json()["message"]["text"] == f"hi from pid {pid}"
    assert not _pid_alive(pid)
    assert f"[parrot {created.json()['id']}] parrot listening" in run.errors()
    assert "parrot stopped" in run.errors()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

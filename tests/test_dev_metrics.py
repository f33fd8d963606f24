"""`/metrics` under a real `chatbox dev` shows the whole process: the API's figures, its worker child's
deliveries, what the database holds, MCP traffic by route template, behind the bearer option."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import wait_for
from tests.support.pipeline import new_signing_secret
from tests.support.receiver import running_receiver
from tests.test_dev import BOOTSTRAP_KEY, _bearer, _workdir, chatbox_dev

METRICS_TOKEN = "dev-metrics-token-for-the-e2e-test-7c41"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_dev_metrics_show_the_workers_deliveries_the_store_and_mcp_routes_by_template(tmp_path: Path) -> None:
    secret = new_signing_secret()
    with (
        running_receiver() as receiver,
        chatbox_dev(_workdir(tmp_path), "metrics", bootstrap_api_key=BOOTSTRAP_KEY, metrics_token=METRICS_TOKEN) as run,
        httpx.Client(base_url=run.base_url, headers=_bearer(BOOTSTRAP_KEY), timeout=10) as api,
    ):
        credential = api.post("/v1/credentials", json={"name": "sig", "kind": "hmac_signing", "value": secret})
        mailbox = api.post(
            "/v1/mailboxes",
            json={"name": "agent", "webhook_url": receiver.url, "signing_credential_id": credential.json()["id"]},
        ).json()
        connection = api.post(
            f"/v1/mailboxes/{mailbox['id']}/connections",
            json={"platform": "signal", "config": {"outbound_url": "http://127.0.0.1:9/v1/send"}},
        ).json()
        accepted = httpx.post(
            f"{run.base_url}/v1/connections/{connection['id']}/messages",
            json={"external_chat_id": "+15550001", "external_message_id": "1700000000001", "text": "count me"},
            headers=_bearer(connection["inbound_token"]),
        )
        assert accepted.status_code == 202, accepted.text
        receiver.wait_for(1, timeout=30)
        # MCP traffic (refused: no mailbox token), counted under the templates, never the raw ids.
        mcp_mailbox = httpx.post(f"{run.base_url}/mcp/{mailbox['id']}", json={}, timeout=10)
        mcp_admin = httpx.post(f"{run.base_url}/mcp/admin/acct_unknown0001", json={}, timeout=10)
        without = httpx.get(f"{run.base_url}/metrics", timeout=10)
        wrong = httpx.get(f"{run.base_url}/metrics", headers=_bearer("not-the-metrics-token"), timeout=10)

        def delivered() -> str | None:
            # The worker counts an attempt after recording it, a moment after the receiver has it.
            response = httpx.get(f"{run.base_url}/metrics", headers=_bearer(METRICS_TOKEN), timeout=10)
            assert response.status_code == 200, response.text
            figures = samples(response.text)
            return response.text if figures.get(("chatbox_deliveries_total", (("outcome", "delivered"),))) else None

        text = wait_for(delivered, timeout=30, what="chatbox_deliveries_total{outcome=delivered}")

    assert mcp_mailbox.status_code == 401, mcp_mailbox.text
    assert without.status_code == 401 and wrong.status_code == 401
    assert METRICS_TOKEN not in without.text + wrong.text
    figures = samples(text)
    assert figures[("chatbox_deliveries_total", (("outcome", "delivered"),))] >= 1
    assert figures[("chatbox_delivery_duration_seconds_count", (("outcome", "delivered"),))] >= 1
    assert figures[("chatbox_inbound_messages_total", (("outcome", "accepted"), ("platform", "signal")))] == 1
    assert figures[("chatbox_accept_duration_seconds_count", (("platform", "signal"),))] == 1
    assert figures[("chatbox_queue_depth", (("status", "pending"),))] == 0
    assert figures[("chatbox_dead_letters", ())] == 0
    assert figures[("chatbox_paused_mailboxes", ())] == 0
    mailbox_route = (("method", "POST"), ("route", "/mcp/{mailbox_id}"), ("status", "401"))
    admin_route = (("method", "POST"), ("route", "/mcp/admin/{account_id}"), ("status", str(mcp_admin.status_code)))
    assert figures[("chatbox_http_requests_total", mailbox_route)] == 1
    assert figures[("chatbox_http_requests_total", admin_route)] == 1
    assert mailbox["id"] not in text and "acct_unknown0001" not in text
    assert 'route="unmatched"' not in text

"""Failed-authentication throttling: the buckets alone (a test clock), then every bearer surface over HTTP.

The HTTP tests run with tiny limits (3 failures per client and credential, 5 per client, per minute) and
move the runtime's throttle clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbox.asgi import create_app
from chatbox.domain.errors import AuthenticationError, ThrottledError
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.services.throttle import Attempt, AuthThrottle, ThrottlePolicy, api_key_target, client_address
from tests.conftest import AccountKey
from tests.support.api import UNKNOWN_MAILBOX, assert_error, create_connection, create_mailbox

PER_CREDENTIAL = 3
PER_CLIENT = 5
WINDOW = 60.0
ATTACKER = ("198.51.100.7", 40000)
OWNER = ("203.0.113.20", 40000)
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
INBOUND = {"external_chat_id": "c-1", "external_message_id": "m-1", "text": "hi"}


class StepClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def throttle(per_client: int = PER_CLIENT, per_credential: int = PER_CREDENTIAL) -> tuple[AuthThrottle, StepClock]:
    clock = StepClock()
    return AuthThrottle(ThrottlePolicy(per_client, per_credential, WINDOW), clock=clock), clock


def refused_for(limiter: AuthThrottle, attempt: Attempt) -> int | None:
    """The Retry-After of a refused attempt, or None when it would be checked."""
    try:
        limiter.check(attempt)
    except ThrottledError as exc:
        return exc.retry_after
    return None


# --- the buckets ------------------------------------------------------------------------------------


def test_a_client_is_refused_once_its_failures_fill_the_bucket_and_let_in_again_as_it_refills() -> None:
    limiter, clock = throttle()
    attempt = Attempt("198.51.100.7", "api_key:cbk_guessed00")

    for _ in range(PER_CREDENTIAL):
        assert refused_for(limiter, attempt) is None
        limiter.record_failure(attempt)

    assert refused_for(limiter, attempt) == WINDOW / PER_CREDENTIAL  # one failure comes back every 20 s
    clock.advance(WINDOW / PER_CREDENTIAL - 1)
    assert refused_for(limiter, attempt) == 1
    clock.advance(1)
    assert refused_for(limiter, attempt) is None


def test_successes_never_count() -> None:
    limiter, _ = throttle()
    attempt = Attempt("198.51.100.7", "mcp:mbx_1")

    for _ in range(100):
        with limiter.guard(attempt):
            pass

    assert refused_for(limiter, attempt) is None


def test_guard_counts_an_authentication_error_and_lets_it_through() -> None:
    limiter, _ = throttle(per_credential=1)
    attempt = Attempt("198.51.100.7", "inbound:conn_1")

    with pytest.raises(AuthenticationError), limiter.guard(attempt):
        raise AuthenticationError("wrong token")

    with pytest.raises(ThrottledError), limiter.guard(attempt):
        pass


def test_failures_against_one_credential_leave_the_clients_other_credentials_alone_until_the_client_limit() -> None:
    limiter, _ = throttle()
    broken = Attempt("198.51.100.7", "api_key:cbk_revoked000")
    for _ in range(PER_CREDENTIAL):
        limiter.record_failure(broken)

    assert refused_for(limiter, broken) is not None
    healthy = Attempt("198.51.100.7", "api_key:cbk_healthy000")
    assert refused_for(limiter, healthy) is None
    for _ in range(PER_CLIENT - PER_CREDENTIAL):
        limiter.record_failure(Attempt("198.51.100.7", "mcp:mbx_other"))
    assert refused_for(limiter, healthy) == WINDOW / PER_CLIENT


def test_one_clients_failures_never_refuse_another_client_even_on_the_same_credential() -> None:
    limiter, _ = throttle()
    target = "api_key:cbk_owner00000"
    for _ in range(PER_CLIENT):
        limiter.record_failure(Attempt("198.51.100.7", target))

    assert refused_for(limiter, Attempt("198.51.100.7", target)) is not None
    assert refused_for(limiter, Attempt("203.0.113.20", target)) is None


def test_a_webhook_failure_counts_only_for_its_address_and_connection() -> None:
    limiter, _ = throttle()
    platform_address = "149.154.167.220"
    for _ in range(PER_CLIENT + 1):
        limiter.record_failure(Attempt(platform_address, "webhook:conn_misconfigured", per_client=False))

    assert refused_for(limiter, Attempt(platform_address, "webhook:conn_misconfigured", per_client=False)) is not None
    assert refused_for(limiter, Attempt(platform_address, "webhook:conn_healthy", per_client=False)) is None
    assert refused_for(limiter, Attempt(platform_address, "api_key:cbk_anything00")) is None


def test_a_zero_limit_switches_its_bucket_off() -> None:
    limiter, _ = throttle(per_client=0, per_credential=0)
    attempt = Attempt("198.51.100.7", "api_key:cbk_guessed00")

    for _ in range(1000):
        limiter.record_failure(attempt)

    assert refused_for(limiter, attempt) is None


def test_buckets_beyond_capacity_are_forgotten_least_recently_used_first() -> None:
    clock = StepClock()
    limiter = AuthThrottle(ThrottlePolicy(0, 1, WINDOW), clock=clock, capacity=2)
    first, second, third = (Attempt("198.51.100.7", f"mcp:mbx_{n}") for n in range(3))

    for attempt in (first, second, third):
        limiter.record_failure(attempt)

    assert refused_for(limiter, first) is None
    assert refused_for(limiter, second) is not None and refused_for(limiter, third) is not None


@pytest.mark.parametrize(
    ("peer", "counted_as"),
    [
        (("198.51.100.7", 5000), "198.51.100.7"),
        (("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 5000), "2001:db8:1:2::/64"),
        (("::ffff:198.51.100.7", 5000), "198.51.100.7"),
        (("testclient", 50000), "testclient"),
        (None, "unknown"),
    ],
    ids=["ipv4", "ipv6-by-64", "ipv4-mapped", "not-an-address", "none"],
)
def test_clients_are_counted_by_address_and_ipv6_hosts_by_their_64(peer: Any, counted_as: str) -> None:
    assert client_address(peer) == counted_as


def test_an_api_key_is_counted_by_the_prefix_kept_with_it() -> None:
    assert api_key_target("cbk_0123456789abcdefghij") == "api_key:cbk_01234567"


# --- over HTTP ----------------------------------------------------------------------------------------


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="http://127.0.0.1:8000",
        auth_failures_per_credential=PER_CREDENTIAL,
        auth_failures_per_client=PER_CLIENT,
        auth_failure_window_seconds=WINDOW,
    )


@pytest.fixture
def clock(runtime: Runtime) -> StepClock:
    step = StepClock()
    runtime.auth_throttle.clock = step
    return step


@pytest.fixture
def attacker(runtime: Runtime, clock: StepClock) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), base_url="http://127.0.0.1:8000", client=ATTACKER) as test_client:
        yield test_client


@pytest.fixture
def owner(runtime: Runtime, clock: StepClock) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), base_url="http://127.0.0.1:8000", client=OWNER) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_throttled(response: Any, retry_after: int) -> None:
    assert_error(response, 429, "rate_limited")
    assert response.headers["retry-after"] == str(retry_after)


def test_wrong_api_keys_from_one_client_get_429_with_retry_after_while_another_client_gets_in(
    attacker: TestClient, owner: TestClient, account: AccountKey
) -> None:
    answers = [attacker.get("/v1/mailboxes", headers=bearer("cbk_wrong-key-number-1")) for _ in range(PER_CREDENTIAL)]
    refused = attacker.get("/v1/mailboxes", headers=bearer("cbk_wrong-key-number-1"))

    assert [a.status_code for a in answers] == [401] * PER_CREDENTIAL
    assert_throttled(refused, int(WINDOW / PER_CREDENTIAL))
    assert owner.get("/v1/mailboxes", headers=account.headers).status_code == 200


def test_a_client_spraying_keys_is_refused_even_its_right_key_until_it_waits(
    attacker: TestClient, clock: StepClock, account: AccountKey
) -> None:
    for n in range(PER_CLIENT):
        assert_error(attacker.get("/v1/mailboxes", headers=bearer(f"cbk_{n:04d}spray-xxxxxxxx")), 401)

    refused = attacker.get("/v1/mailboxes", headers=account.headers)
    clock.advance(WINDOW / PER_CLIENT)
    let_in = attacker.get("/v1/mailboxes", headers=account.headers)

    assert_throttled(refused, int(WINDOW / PER_CLIENT))
    assert let_in.status_code == 200


def test_guessing_with_the_owners_key_prefix_does_not_lock_the_owner_out(
    attacker: TestClient, owner: TestClient, account: AccountKey
) -> None:
    guess = account.api_key[:12] + "x" * (len(account.api_key) - 12)
    for _ in range(PER_CREDENTIAL):
        assert_error(attacker.get("/v1/mailboxes", headers=bearer(guess)), 401)
    assert_error(attacker.get("/v1/mailboxes", headers=bearer(guess)), 429)

    assert owner.get("/v1/mailboxes", headers=account.headers).status_code == 200


def test_admin_mcp_and_rest_failures_of_one_api_key_add_up(attacker: TestClient, account: AccountKey) -> None:
    wrong = "cbk_wrong-admin-key-0001"
    admin = f"/mcp/admin/{account.account_id}"
    for _ in range(PER_CREDENTIAL - 1):
        assert_error(attacker.get("/v1/mailboxes", headers=bearer(wrong)), 401)
    assert_error(attacker.post(admin, json=TOOLS_LIST, headers={**MCP_HEADERS, **bearer(wrong)}), 401)

    refused = attacker.post(admin, json=TOOLS_LIST, headers={**MCP_HEADERS, **bearer(wrong)})

    assert_throttled(refused, int(WINDOW / PER_CREDENTIAL))


def test_wrong_mcp_tokens_get_429_and_the_mailbox_still_answers_its_token_from_elsewhere(
    attacker: TestClient, owner: TestClient, account: AccountKey
) -> None:
    mailbox = create_mailbox(owner, account)
    path = f"/mcp/{mailbox['id']}"
    wrong = {**MCP_HEADERS, **bearer("mcp_" + "x" * 43)}

    answers = [attacker.post(path, json=TOOLS_LIST, headers=wrong) for _ in range(PER_CREDENTIAL)]
    refused = attacker.post(path, json=TOOLS_LIST, headers=wrong)
    served = owner.post(path, json=TOOLS_LIST, headers={**MCP_HEADERS, **bearer(mailbox["mcp_token"])})

    assert [a.status_code for a in answers] == [401] * PER_CREDENTIAL
    assert_throttled(refused, int(WINDOW / PER_CREDENTIAL))
    assert "www-authenticate" not in refused.headers
    assert served.status_code == 200, served.text
    assert "tools" in served.json()["result"]


def test_wrong_mcp_tokens_spread_over_mailboxes_hit_the_client_limit(attacker: TestClient, account: AccountKey) -> None:
    for n in range(PER_CLIENT):
        path = f"/mcp/{UNKNOWN_MAILBOX[:-2]}{n:02d}"
        assert_error(attacker.post(path, json=TOOLS_LIST, headers={**MCP_HEADERS, **bearer("mcp_nope")}), 401)

    refused = attacker.post(f"/mcp/{UNKNOWN_MAILBOX}", json=TOOLS_LIST, headers={**MCP_HEADERS, **bearer("mcp_nope")})

    assert_throttled(refused, int(WINDOW / PER_CLIENT))


def test_wrong_inbound_tokens_get_429_while_the_connector_elsewhere_still_posts(
    attacker: TestClient, owner: TestClient, account: AccountKey
) -> None:
    mailbox = create_mailbox(owner, account)
    connection = create_connection(owner, account, mailbox["id"], platform="signal")
    path = f"/v1/connections/{connection['id']}/messages"

    answers = [attacker.post(path, json=INBOUND, headers=bearer("inb_wrong")) for _ in range(PER_CREDENTIAL)]
    refused = attacker.post(path, json=INBOUND, headers=bearer("inb_wrong"))
    accepted = owner.post(path, json=INBOUND, headers=bearer(connection["inbound_token"]))

    assert [a.status_code for a in answers] == [401] * PER_CREDENTIAL
    assert_throttled(refused, int(WINDOW / PER_CREDENTIAL))
    assert accepted.status_code == 202, accepted.text


def test_a_missing_token_is_not_counted(attacker: TestClient, account: AccountKey) -> None:
    for _ in range(PER_CLIENT * 2):
        assert_error(attacker.get("/v1/mailboxes"), 401)

    assert attacker.get("/v1/mailboxes", headers=account.headers).status_code == 200

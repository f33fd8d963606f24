"""`python -m connectors.discord` as a real subprocess against the Discord stand-in (REST + gateway on 127.0.0.1):
configuration errors, the gateway handshake, the send contract, SIGTERM, and logs without secrets. chatbox
is not running here (the inbox keeps what arrives); tests/test_discord_e2e.py runs it with chatbox."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.cli import wait_for
from tests.support.discord_api import (
    BOT_TOKEN,
    BOT_USER,
    DiscordStandIn,
    Scripted,
    missing_permissions,
    rate_limited,
    running_discord,
)
from tests.support.discord_program import INBOUND_TOKEN, OUTBOUND_AUTH, Program, program_env, running_program, send_body
from tests.support.payloads import load_payload

CHANNEL = "1100000000000000020"
WAIT = 30.0


@pytest.fixture
def discord() -> Iterator[DiscordStandIn]:
    with running_discord() as standin:
        yield standin


@pytest.fixture
def program(tmp_path: Path, discord: DiscordStandIn) -> Iterator[Program]:
    with running_program(tmp_path, discord) as running:
        discord.wait_until(discord.connected, WAIT, "the program's IDENTIFY")
        yield running


def spooled(program: Program) -> int:
    return int(program.health().json()["spool"])


# --- configuration ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("DISCORD_BOT_TOKEN", "<unset>", "DISCORD_BOT_TOKEN is not set"),
        ("DISCORD_BOT_TOKEN", f"Bot {BOT_TOKEN}", "DISCORD_BOT_TOKEN is malformed"),
        ("DISCORD_API_URL", "discord.com/api", "DISCORD_API_URL is malformed"),
        ("CHATBOX_OUTBOUND_AUTH", "<unset>", "CHATBOX_OUTBOUND_AUTH is not set"),
        ("CONNECTOR_PORT", "http", "CONNECTOR_PORT is malformed"),
    ],
    ids=["no-token", "token-with-prefix", "bad-api-url", "no-outbound-auth", "bad-port"],
)
def test_a_missing_or_malformed_variable_stops_the_program_with_one_line_naming_it(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    env = program_env(tmp_path, None, **{variable: value})

    done = subprocess.run([sys.executable, "-m", "connectors.discord"], env=env, capture_output=True, timeout=60)

    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.count("\n") == 1 and said in err, err
    assert BOT_TOKEN not in err and done.stdout == b""


def test_a_refused_token_stops_the_program_with_a_clear_line(tmp_path: Path, discord: DiscordStandIn) -> None:
    env = program_env(tmp_path, discord, CONNECTOR_PORT="0", DISCORD_BOT_TOKEN="MTIz.wrong.token-value-0123456789")

    done = subprocess.run([sys.executable, "-m", "connectors.discord"], env=env, capture_output=True, timeout=60)

    assert done.returncode == 1
    assert "Discord refused DISCORD_BOT_TOKEN" in done.stderr.decode()
    assert "wrong.token-value" not in done.stderr.decode()


# --- the gateway ------------------------------------------------------------------------------------------


def test_the_program_connects_where_gateway_bot_points_with_the_intents_it_needs(
    program: Program, discord: DiscordStandIn
) -> None:
    [identify] = discord.identifies
    guilds, guild_messages, guild_reactions, dm_messages, dm_reactions = 1 << 0, 1 << 9, 1 << 10, 1 << 12, 1 << 13
    message_content = 1 << 15
    assert (
        identify["intents"] == guilds | guild_messages | guild_reactions | dm_messages | dm_reactions | message_content
    )
    assert [call.path for call in discord.calls][:3] == ["/users/@me", "/oauth2/applications/@me", "/gateway/bot"]
    assert discord.connections[0] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    health = program.health()
    assert health.status_code == 200 and health.json()["gateway"] == "connected"


def test_messages_and_reactions_are_spooled_while_chatbox_is_away_and_own_messages_are_not(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.post_message(CHANNEL, "first")
    discord.post_message(CHANNEL, "from the bot itself", author=BOT_USER)
    discord.post_message(CHANNEL, "second")
    discord.dispatch("MESSAGE_REACTION_ADD", load_payload("discord", "reaction_add")["d"])

    wait_for(lambda: spooled(program) == 3 or None, timeout=WAIT, what="two messages and a reaction spooled")
    assert "chatbox unreachable" in program.logs()


def test_a_dropped_socket_resumes_and_the_missed_dispatches_are_replayed(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.drop_socket()
    discord.post_message(CHANNEL, "written while the socket was down")  # kept by the stand-in for the RESUME

    discord.wait_until(lambda: len(discord.resumes) == 1 and discord.connected(), WAIT, "the RESUME")
    wait_for(lambda: spooled(program) == 1 or None, timeout=WAIT, what="the replayed message")
    assert len(discord.identifies) == 1


def test_an_invalidated_session_identifies_again_and_backfills_from_history(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.post_message(CHANNEL, "seen live")
    wait_for(lambda: spooled(program) == 1 or None, timeout=WAIT, what="the live message")

    discord.message(CHANNEL, "written during the gap")  # in the history only: never dispatched
    discord.drop_socket(resumable=False)

    discord.wait_until(lambda: len(discord.identifies) == 2 and discord.connected(), WAIT, "a new IDENTIFY")
    wait_for(lambda: spooled(program) == 2 or None, timeout=WAIT, what="the backfilled message")
    history = [call for call in discord.calls if call.method == "GET" and call.path.endswith("/messages")]
    assert [call.path for call in history] == [f"/channels/{CHANNEL}/messages"]


def test_a_long_gap_is_read_back_page_by_page(program: Program, discord: DiscordStandIn) -> None:
    discord.post_message(CHANNEL, "seen live")
    wait_for(lambda: spooled(program) == 1 or None, timeout=WAIT, what="the live message")
    for n in range(230):
        discord.message(CHANNEL, f"gap {n}")  # in the history only

    discord.drop_socket(resumable=False)

    wait_for(lambda: spooled(program) == 231 or None, timeout=WAIT, what="every message of the gap")
    pages = [call for call in discord.calls if call.method == "GET" and call.path.endswith("/messages")]
    assert len(pages) == 3  # 100 + 100 + 30


def test_healthz_is_503_while_the_gateway_is_down_and_200_once_it_is_back(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.gateway_down = True
    discord.drop_socket()

    down = wait_for(lambda: program.health() if program.health().status_code == 503 else None, timeout=WAIT, what="503")
    discord.gateway_down = False

    assert down.json()["gateway"] == "disconnected"
    wait_for(lambda: program.health().status_code == 200 or None, timeout=WAIT, what="the gateway back")
    assert len(discord.identifies) == 1  # it resumed the same session


# --- sends ------------------------------------------------------------------------------------------------


def test_a_send_posts_to_the_channel_and_answers_the_message_id(program: Program, discord: DiscordStandIn) -> None:
    response = program.send(send_body("On my way.", CHANNEL, reply_to="1312345678901234567:edit:2026-11-30T15:22"))

    assert response.status_code == 200, response.text
    [body] = discord.sent_to(CHANNEL)
    assert body["content"] == "On my way."
    assert body["message_reference"] == {"message_id": "1312345678901234567", "fail_if_not_exists": False}
    assert body["allowed_mentions"]["parse"] == ["users"]
    assert "flags" not in body
    assert response.json()["message_id"].isdigit()


def test_a_long_text_is_split_into_messages_of_2000_characters_replying_with_the_first(
    program: Program, discord: DiscordStandIn
) -> None:
    text = "\n".join(f"line {n:04d} " + "x" * 80 for n in range(60))  # 5,339 characters

    response = program.send(send_body(text, CHANNEL, reply_to="1312345678901234567", options={"silent": True}))

    assert response.status_code == 200, response.text
    bodies = discord.sent_to(CHANNEL)
    assert len(bodies) == 3
    assert all(len(b["content"]) <= 2000 and b["flags"] == 1 << 12 for b in bodies)
    assert "\n".join(b["content"] for b in bodies) == text
    assert "message_reference" in bodies[0] and all("message_reference" not in b for b in bodies[1:])


def test_unknown_options_are_ignored(program: Program, discord: DiscordStandIn) -> None:
    response = program.send(send_body("hi", CHANNEL, options={"silent": False, "embed_color": "teal"}))

    assert response.status_code == 200, response.text


def test_a_short_rate_limit_is_waited_out_and_a_long_one_is_answered_with_retry_after(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.script.append(rate_limited(0.3))
    assert program.send(send_body("after a short wait", CHANNEL)).status_code == 200

    discord.script.append(rate_limited(42.0))
    response = program.send(send_body("too long to wait", CHANNEL))

    assert response.status_code == 429
    assert response.json()["retry_after"] == 42.0
    assert int(response.headers["Retry-After"]) >= 42


@pytest.mark.parametrize(
    ("scripted", "status", "code"),
    [
        (missing_permissions(), 403, "forbidden"),
        (Scripted(404, {"message": "Unknown Channel", "code": 10003}), 404, "unknown_chat"),
        (Scripted(400, {"message": "Invalid Form Body", "code": 50035}), 400, "refused"),
        (Scripted(502, {"message": "Bad Gateway"}), 503, "platform_unavailable"),
    ],
    ids=["403-missing-permissions", "404-unknown-channel", "400-invalid", "502-discord-down"],
)
def test_discord_refusals_map_to_the_contract(
    program: Program, discord: DiscordStandIn, scripted: Scripted, status: int, code: str
) -> None:
    discord.script.append(scripted)

    response = program.send(send_body("hello", CHANNEL))

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert BOT_TOKEN not in response.text


def test_a_chat_id_that_is_no_snowflake_is_refused_without_calling_discord(
    program: Program, discord: DiscordStandIn
) -> None:
    response = program.send(send_body("hello", "general"))

    assert response.status_code == 404
    assert discord.sent == []


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Authorization": "Bearer wrong"}, json.dumps(send_body("x", CHANNEL)).encode(), 401),
        ({}, json.dumps(send_body("x", CHANNEL)).encode(), 401),
        ({"Authorization": f"Bearer {OUTBOUND_AUTH}"}, b"{not json", 400),
        ({"Authorization": f"Bearer {OUTBOUND_AUTH}"}, b'{"chat_id": 5}', 422),
        ({"Authorization": f"Bearer {OUTBOUND_AUTH}"}, b"[" * 100_000, 400),
    ],
    ids=["wrong-bearer", "no-bearer", "not-json", "wrong-shape", "deep-json"],
)
def test_bad_bearers_and_junk_bodies_are_4xx(
    program: Program, discord: DiscordStandIn, headers: dict[str, str], body: bytes, status: int
) -> None:
    response = httpx.post(f"{program.url}/v1/send", content=body, headers=headers, timeout=10)

    assert response.status_code == status, response.text
    assert discord.sent == []


# --- stopping and logs ------------------------------------------------------------------------------------


def test_sigterm_lets_a_send_in_flight_finish_then_exits_0(program: Program, discord: DiscordStandIn) -> None:
    discord.send_delay = 1.0
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(program.send, send_body("slow", CHANNEL))
        wait_for(lambda: discord.sent or None, timeout=WAIT, what="the send to reach Discord")
        program.process.send_signal(signal.SIGTERM)
        sent = answer.result(timeout=30)

    assert sent.status_code == 200, sent.text
    assert program.process.wait(timeout=30) == 0


def test_sigterm_exits_0_and_the_logs_are_json_without_a_secret(program: Program, discord: DiscordStandIn) -> None:
    discord.post_message(CHANNEL, "hello")
    program.send(send_body("hi", CHANNEL))
    wait_for(lambda: spooled(program) == 1 or None, timeout=WAIT, what="a spooled message")

    program.process.send_signal(signal.SIGTERM)

    assert program.process.wait(timeout=30) == 0
    lines = program.logs().splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    for secret in (BOT_TOKEN, INBOUND_TOKEN, OUTBOUND_AUTH):
        assert secret not in program.logs()


def test_it_runs_where_chatbox_is_not_installed(tmp_path: Path) -> None:
    """The image ships connectors/ alone: every module the program loads must import without the core."""
    blocked = (
        "import runpy, sys; sys.modules['chatbox'] = None; runpy.run_module('connectors.discord', run_name='__main__')"
    )
    finished = subprocess.run(
        [sys.executable, "-c", blocked],
        env=program_env(tmp_path, None, DISCORD_BOT_TOKEN="<unset>"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (finished.returncode, finished.stderr) == (2, "configuration error: DISCORD_BOT_TOKEN is not set\n")


def test_a_payload_discord_py_cannot_parse_restarts_the_client_and_the_backfill_covers_the_gap(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.post_message(CHANNEL, "before")
    wait_for(lambda: spooled(program) == 1 or None, timeout=WAIT, what="the first message")

    # A MESSAGE_CREATE whose author lacks fields discord.py's parser needs: its client stops.
    broken = discord.message(CHANNEL, "with an odd author", author={"id": "1200000000000000099"})
    discord.message(CHANNEL, "after")  # in the history only: never dispatched
    discord.dispatch("MESSAGE_CREATE", broken)

    discord.wait_until(lambda: len(discord.identifies) == 2 and discord.connected(), WAIT, "a new client's IDENTIFY")
    wait_for(lambda: spooled(program) == 3 or None, timeout=WAIT, what="the odd and the missed message")
    assert "starting a new one" in program.logs()

"""Idempotent sends on the container platforms: the Discord and Signal programs (real subprocesses) against
their stand-ins, and chatbox's container client (`HttpContainerConnector`) against that program. A create whose
answer is lost is asked again with the same `nonce` (`enforce_nonce`), so Discord makes one message; a POST
to the program that times out is looked up in the program's record (`GET /v1/sends/{request_id}`) and a retry
with the same send id is answered from that record; a split send refused on part 2 sends only the rest."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbox.adapters.http_container import HttpContainerConnector
from chatbox.domain.addresses import AddressPolicy
from chatbox.domain.errors import UnknownOutcomeError
from chatbox.ports.connector import ConnectionContext, OutboundMessage
from connectors.discord.send import part_nonce
from tests.support.discord_api import DiscordStandIn, missing_permissions, running_discord
from tests.support.discord_program import OUTBOUND_AUTH, Program, running_program, send_body
from tests.support.signal_cli import running_signal_cli
from tests.support.signal_program import ACCOUNT as SIGNAL_ACCOUNT
from tests.support.signal_program import ADA
from tests.support.signal_program import OUTBOUND_AUTH as SIGNAL_OUTBOUND_AUTH
from tests.support.signal_program import Program as SignalProgram
from tests.support.signal_program import running_program as running_signal_program

CHANNEL = "1100000000000000020"
WAIT = 30.0
SEND_ID = "snd_01JD3SENDSENDSENDSENDSENDS"


@pytest.fixture
def discord() -> Iterator[DiscordStandIn]:
    with running_discord() as standin:
        yield standin


@pytest.fixture
def program(tmp_path: Path, discord: DiscordStandIn) -> Iterator[Program]:
    with running_program(tmp_path, discord) as running:
        discord.wait_until(discord.connected, WAIT, "the program's IDENTIFY")
        yield running


def _context(program: Program) -> ConnectionContext:
    return ConnectionContext(
        "conn_01JD3AAAAAAAAAAAAAAAAAAAAA",
        "discord",
        {"outbound_url": f"{program.url}/v1/send", "managed": True},
        {"outbound_auth": OUTBOUND_AUTH},
    )


def test_a_create_whose_answer_is_lost_is_asked_again_with_its_nonce_and_discord_makes_one_message(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.drop_responses = [True]

    response = program.send(send_body("Deploying now.", CHANNEL, request_id="req-nonce-1"))

    assert response.status_code == 200, response.text
    [body] = discord.sent_to(CHANNEL)  # one message made; the second create was answered from the nonce
    assert body["nonce"] == part_nonce("req-nonce-1", 0) and body["enforce_nonce"] is True
    assert len(body["nonce"]) <= 25
    assert response.json()["message_id"] == discord.by_nonce[(CHANNEL, body["nonce"])]["id"]


def test_a_split_send_refused_on_part_2_names_part_1_and_a_retry_sends_only_the_rest(
    program: Program, discord: DiscordStandIn
) -> None:
    text = "\n".join(f"line {n:04d} " + "x" * 80 for n in range(40))  # 3,559 characters: two messages
    discord.script = [None, missing_permissions()]  # part 1 goes through, part 2 is refused

    refused = program.send(send_body(text, CHANNEL, request_id="req-split"))

    assert refused.status_code == 403, refused.text
    answer = refused.json()
    assert answer["parts_total"] == 2 and len(answer["parts_sent"]) == 1
    retried = program.send(send_body(text, CHANNEL, request_id="req-split", parts_sent=answer["parts_sent"]))
    assert retried.status_code == 200, retried.text
    bodies = discord.sent_to(CHANNEL)
    assert len(bodies) == 2 and "\n".join(b["content"] for b in bodies) == text  # part 1 once, then part 2
    assert retried.json()["part_ids"][0] == answer["parts_sent"][0]
    assert retried.json()["message_id"] == answer["parts_sent"][0]


def test_a_post_to_the_program_that_times_out_is_looked_up_and_a_retry_is_answered_from_its_record(
    program: Program, discord: DiscordStandIn
) -> None:
    discord.send_delay = 2.0  # the program waits on Discord longer than chatbox waits on the program
    impatient = HttpContainerConnector(AddressPolicy(), timeout=0.5)
    patient = HttpContainerConnector(AddressPolicy(), timeout=15)
    message = OutboundMessage(CHANNEL, "Shipped.", send_id=SEND_ID)
    try:
        with pytest.raises(UnknownOutcomeError, match="still sending it"):
            impatient.send(_context(program), message)
        discord.wait_until(lambda: len(discord.sent_to(CHANNEL)) == 1, WAIT, "the create")

        retry = OutboundMessage(CHANNEL, "Shipped.", send_id=SEND_ID, uncertain_since=time.time())
        again = patient.send(_context(program), retry)
    finally:
        impatient.close()
        patient.close()

    [body] = discord.sent_to(CHANNEL)
    assert again.external_id == discord.by_nonce[(CHANNEL, body["nonce"])]["id"]
    assert again.parts == (again.external_id,)


# --- Signal: the program's record is the lookup ----------------------------------------------------------------


def _signal_context(program: SignalProgram) -> ConnectionContext:
    return ConnectionContext(
        "conn_01JD3AAAAAAAAAAAAAAAAAAAAA",
        "signal",
        {"outbound_url": f"{program.url}/v1/send", "managed": True},
        {"outbound_auth": SIGNAL_OUTBOUND_AUTH},
    )


def test_signal_a_timed_out_send_is_resolved_from_the_programs_record_and_sent_once(tmp_path: Path) -> None:
    with (
        running_signal_cli(SIGNAL_ACCOUNT) as signal_cli,
        running_signal_program(tmp_path, SIGNAL_CLI_URL=signal_cli.url) as program,
    ):
        signal_cli.send_delay = 2.0  # signal-cli takes longer than chatbox waits for the program
        impatient = HttpContainerConnector(AddressPolicy(), timeout=0.5)
        patient = HttpContainerConnector(AddressPolicy(), timeout=15)
        try:
            with pytest.raises(UnknownOutcomeError, match="still sending it"):
                impatient.send(_signal_context(program), OutboundMessage(ADA, "On my way.", send_id=SEND_ID))
            retry = OutboundMessage(ADA, "On my way.", send_id=SEND_ID, uncertain_since=time.time())
            again = patient.send(_signal_context(program), retry)
            # Another send chatbox lost track of, that this program has no record of: Signal has no lookup.
            with pytest.raises(UnknownOutcomeError, match="no record of its outcome"):
                lost = OutboundMessage(ADA, "Lost.", send_id="snd_01JD3LOSTLOSTLOSTLOSTLOSTLO", uncertain_since=1.0)
                patient.send(_signal_context(program), lost)
        finally:
            impatient.close()
            patient.close()

    assert [send["message"] for send in signal_cli.sends] == ["On my way."]
    assert again.external_id.startswith(f"{SIGNAL_ACCOUNT}:")


def test_discord_a_retry_later_than_discord_remembers_nonces_is_unknown_and_posts_nothing(
    program: Program, discord: DiscordStandIn
) -> None:
    stale = time.time() - 10 * 60  # the unanswered attempt began ten minutes ago

    response = program.send(send_body("Late.", CHANNEL, request_id="req-stale", uncertain_since=stale))

    assert response.status_code == 504, response.text
    assert response.json()["code"] == "unknown_outcome" and "check the channel" in response.json()["message"]
    assert discord.sent_to(CHANNEL) == []

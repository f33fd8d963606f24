"""Resource ids and tokens."""

from __future__ import annotations

import os
import time

from chatbox.domain.ids import encode_id_body, hash_token, is_valid_id, new_id, new_token, token_matches


def test_ids_made_in_a_burst_sort_in_creation_order() -> None:
    made = [new_id("mailbox") for _ in range(5_000)]

    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_an_id_body_spells_each_five_bits_in_crockford_base32_most_significant_first() -> None:
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    values = [0, 1, 31, 32, (1 << 128) - 1, (1 << 130) - 1, 0x0123456789ABCDEF0123456789ABCDEF, 1762000000000 << 80]

    for value in values:
        expected = "".join(crockford[(value >> shift) & 31] for shift in range(125, -1, -5))
        assert encode_id_body(value) == expected, value


def test_new_ids_are_valid_for_their_kind_only() -> None:
    mailbox_id = new_id("mailbox")

    assert mailbox_id.startswith("mbx_")
    assert is_valid_id("mailbox", mailbox_id)
    assert not is_valid_id("connection", mailbox_id)
    assert not is_valid_id("mailbox", mailbox_id.lower())
    assert not is_valid_id("mailbox", mailbox_id + "0")


def test_tokens_match_their_hash_only() -> None:
    token = new_token("mcp")

    assert token.startswith("mcp_")
    assert token_matches(token, hash_token(token))
    assert not token_matches(new_token("mcp"), hash_token(token))


def test_ids_made_in_different_milliseconds_carry_fresh_random_parts() -> None:
    # More ids than one block of randomness holds, each in a millisecond of its own: the random part (the low 80
    # bits) is never a repeat, across the blocks.
    random_parts = set()
    for _ in range(600):
        made = new_id("message")
        random_parts.add(decode_random_part(made))
        time.sleep(0.0011)

    assert len(random_parts) == 600


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    new_id("message")  # the parent holds a block of randomness, mostly unused
    time.sleep(0.002)  # both next ids in a later millisecond: each takes a random part, none counts on from the last
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.close(reader)
        os.write(writer, new_id("message").encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child_id = pipe.read()
    os.waitpid(child, 0)
    parent_id = new_id("message")

    assert decode_random_part(child_id) != decode_random_part(parent_id)


def decode_random_part(made: str) -> int:
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for digit in made.partition("_")[2]:
        value = value * 32 + crockford.index(digit)
    return value & ((1 << 80) - 1)

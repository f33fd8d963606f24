"""Resource ids and tokens."""

from __future__ import annotations

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

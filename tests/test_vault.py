"""The vault: AES-256-GCM sealing bound to a credential and its account, and key rotation."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from sqlalchemy import select

from chatbox.domain.errors import VaultError
from chatbox.domain.schemas import CredentialCreate, CredentialKind
from chatbox.domain.vault import Sealed, Vault, decode_key, generate_key, key_id_of
from chatbox.runtime import Runtime
from chatbox.services import credentials
from chatbox.store.models import Credential
from tests.conftest import AccountKey

CREDENTIAL = "cred_01JD3ZZZZZZZZZZZZZZZZZZZZZ"
ACCOUNT = "acct_01JD3ZZZZZZZZZZZZZZZZZZZZZ"


def _flip_first_byte(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


@pytest.fixture
def vault() -> Vault:
    return Vault(generate_key())


@pytest.fixture
def sealed(vault: Vault) -> Sealed:
    return vault.seal("xoxb-secret-token", credential_id=CREDENTIAL, account_id=ACCOUNT)


def test_sealed_value_opens_to_the_same_plaintext(vault: Vault, sealed: Sealed) -> None:
    opened = vault.open(sealed, credential_id=CREDENTIAL, account_id=ACCOUNT)

    assert opened == "xoxb-secret-token"
    assert b"xoxb-secret-token" not in sealed.ciphertext
    assert sealed.key_id == vault.current_key_id


def test_non_ascii_and_empty_values_roundtrip(vault: Vault) -> None:
    for value in ("", "pässwörd 🔑", "x" * 10_000):
        sealed = vault.seal(value, credential_id=CREDENTIAL, account_id=ACCOUNT)

        assert vault.open(sealed, credential_id=CREDENTIAL, account_id=ACCOUNT) == value


def test_sealing_twice_uses_a_fresh_nonce(vault: Vault) -> None:
    first = vault.seal("same", credential_id=CREDENTIAL, account_id=ACCOUNT)
    second = vault.seal("same", credential_id=CREDENTIAL, account_id=ACCOUNT)

    assert len(first.nonce) == 12
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_tampered_ciphertext_is_refused(vault: Vault, sealed: Sealed) -> None:
    tampered = replace(sealed, ciphertext=_flip_first_byte(sealed.ciphertext))

    with pytest.raises(VaultError, match="failed authentication"):
        vault.open(tampered, credential_id=CREDENTIAL, account_id=ACCOUNT)


def test_truncated_ciphertext_is_refused(vault: Vault, sealed: Sealed) -> None:
    for ciphertext in (sealed.ciphertext[:-1], sealed.ciphertext[:4], b""):
        with pytest.raises(VaultError):
            vault.open(replace(sealed, ciphertext=ciphertext), credential_id=CREDENTIAL, account_id=ACCOUNT)


def test_tampered_nonce_is_refused(vault: Vault, sealed: Sealed) -> None:
    tampered = replace(sealed, nonce=_flip_first_byte(sealed.nonce))

    with pytest.raises(VaultError, match="failed authentication"):
        vault.open(tampered, credential_id=CREDENTIAL, account_id=ACCOUNT)


def test_nonce_of_impossible_length_is_a_vault_error(vault: Vault, sealed: Sealed) -> None:
    for nonce in (b"", sealed.nonce[:4]):
        with pytest.raises(VaultError):
            vault.open(replace(sealed, nonce=nonce), credential_id=CREDENTIAL, account_id=ACCOUNT)


def test_wrong_key_cannot_open(sealed: Sealed) -> None:
    other = Vault(generate_key())

    with pytest.raises(VaultError, match="not configured"):
        other.open(sealed, credential_id=CREDENTIAL, account_id=ACCOUNT)


def test_wrong_key_under_the_same_key_id_fails_authentication(sealed: Sealed) -> None:
    other = Vault(generate_key())
    relabelled = replace(sealed, key_id=other.current_key_id)

    with pytest.raises(VaultError, match="failed authentication"):
        other.open(relabelled, credential_id=CREDENTIAL, account_id=ACCOUNT)


def test_ciphertext_is_bound_to_its_credential_id(vault: Vault, sealed: Sealed) -> None:
    with pytest.raises(VaultError):
        vault.open(sealed, credential_id="cred_01JD3YYYYYYYYYYYYYYYYYYYYY", account_id=ACCOUNT)


def test_ciphertext_is_bound_to_its_account_id(vault: Vault, sealed: Sealed) -> None:
    with pytest.raises(VaultError):
        vault.open(sealed, credential_id=CREDENTIAL, account_id="acct_01JD3YYYYYYYYYYYYYYYYYYYYY")


def test_ids_cannot_be_shifted_across_the_boundary(vault: Vault) -> None:
    sealed = vault.seal("secret", credential_id="a:b", account_id="c")

    with pytest.raises(VaultError):
        vault.open(sealed, credential_id="a", account_id="b:c")


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("not base64!!", "not valid base64"),
        ("ab-_" * 11, "not valid base64"),  # the URL-safe alphabet is not the standard one
        (base64.b64encode(b"k" * 16).decode(), "must be 32 bytes, got 16"),
        (base64.b64encode(b"k" * 33).decode(), "must be 32 bytes, got 33"),
    ],
)
def test_malformed_keys_are_refused(key: str, problem: str) -> None:
    with pytest.raises(VaultError, match=problem):
        Vault(key)
    with pytest.raises(VaultError, match=problem):
        Vault(generate_key(), [key])


def test_missing_key_is_refused_with_the_variable_to_set() -> None:
    with pytest.raises(VaultError, match="CHATBOX_VAULT_KEY"):
        Vault("")


def test_error_messages_never_contain_the_key() -> None:
    key = base64.b64encode(b"q" * 31).decode()

    with pytest.raises(VaultError) as caught:
        Vault(key)

    assert key not in str(caught.value)


def test_generated_keys_are_32_random_bytes_with_distinct_ids() -> None:
    first, second = generate_key(), generate_key()

    assert len(decode_key(first)) == 32
    assert first != second
    assert key_id_of(decode_key(first)) != key_id_of(decode_key(second))


def test_key_id_does_not_reveal_the_key() -> None:
    key = generate_key()

    assert Vault(key).current_key_id not in key
    assert Vault(key).current_key_id == key_id_of(decode_key(key))


def test_old_key_still_opens_after_the_current_key_changes() -> None:
    key_a, key_b = generate_key(), generate_key()
    sealed = Vault(key_a).seal("secret", credential_id=CREDENTIAL, account_id=ACCOUNT)

    rotated = Vault(key_b, [key_a])

    assert rotated.open(sealed, credential_id=CREDENTIAL, account_id=ACCOUNT) == "secret"
    assert rotated.needs_rotation(sealed)
    assert rotated.seal("new", credential_id=CREDENTIAL, account_id=ACCOUNT).key_id == key_id_of(decode_key(key_b))


def test_old_keys_parse_from_a_comma_separated_list() -> None:
    key_a, key_b, key_c = generate_key(), generate_key(), generate_key()
    sealed = Vault(key_b).seal("secret", credential_id=CREDENTIAL, account_id=ACCOUNT)

    vault = Vault.from_strings(key_c, f" {key_a} , {key_b},,")

    assert vault.open(sealed, credential_id=CREDENTIAL, account_id=ACCOUNT) == "secret"


def _create_credentials(runtime: Runtime, vault: Vault, account_id: str, count: int) -> list[str]:
    with runtime.db.session() as db:
        return [
            credentials.create_credential(
                db, vault, account_id, CredentialCreate(name=f"c{i}", kind=CredentialKind.platform, value=f"v{i}")
            ).id
            for i in range(count)
        ]


def _stored(runtime: Runtime) -> dict[str, Credential]:
    with runtime.db.session() as db:
        return {c.id: c for c in db.scalars(select(Credential))}


def test_rotate_all_reseals_every_credential_under_the_current_key(runtime: Runtime, account: AccountKey) -> None:
    key_a, key_b = generate_key(), generate_key()
    ids = _create_credentials(runtime, Vault(key_a), account.account_id, 5)
    vault_b = Vault(key_b, [key_a])

    with runtime.db.session() as db:
        rotated = credentials.rotate_all(db, vault_b, batch_size=2)

    assert rotated == 5
    stored = _stored(runtime)
    assert {c.key_id for c in stored.values()} == {vault_b.current_key_id}
    only_b = Vault(key_b)
    assert [credentials.reveal(only_b, stored[i]) for i in ids] == [f"v{i}" for i in range(5)]
    with pytest.raises(VaultError):
        credentials.reveal(Vault(key_a), stored[ids[0]])


def test_rotate_all_is_a_no_op_the_second_time(runtime: Runtime, account: AccountKey) -> None:
    key_a, key_b = generate_key(), generate_key()
    _create_credentials(runtime, Vault(key_a), account.account_id, 2)
    vault_b = Vault(key_b, [key_a])
    with runtime.db.session() as db:
        credentials.rotate_all(db, vault_b)
    before = {i: c.ciphertext for i, c in _stored(runtime).items()}

    with runtime.db.session() as db:
        rotated = credentials.rotate_all(db, vault_b)

    assert rotated == 0
    assert {i: c.ciphertext for i, c in _stored(runtime).items()} == before


def test_rotate_all_fails_loudly_without_the_old_key(runtime: Runtime, account: AccountKey) -> None:
    key_a, key_b = generate_key(), generate_key()
    _create_credentials(runtime, Vault(key_a), account.account_id, 1)

    with runtime.db.session() as db, pytest.raises(VaultError, match="not configured"):
        credentials.rotate_all(db, Vault(key_b))

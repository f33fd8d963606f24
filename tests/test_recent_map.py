"""The ingest dispatcher's bounded maps (`Recent`): the dedupe map of taken deliveries is bounded in bytes as well
as entries, so long platform keys cannot grow a process without bound."""

from __future__ import annotations

from chatbox.services.ingest import TAKEN_MAX_BYTES, Recent, taken_entry_size


def test_entries_beyond_the_byte_bound_evict_the_least_recent() -> None:
    recent: Recent[str, bool] = Recent(1000, 3600.0, max_bytes=100, size_of=len)

    for key in ("a" * 40, "b" * 40, "c" * 40):
        recent.put(key, True)

    assert recent.get("a" * 40) is None
    assert recent.get("b" * 40) and recent.get("c" * 40)
    assert recent.bytes == 80


def test_putting_a_key_again_and_discarding_it_keep_the_count_of_bytes_true() -> None:
    recent: Recent[str, bool] = Recent(1000, 3600.0, max_bytes=100, size_of=len)

    recent.put("k" * 30, True)
    recent.put("k" * 30, False)
    assert recent.bytes == 30
    recent.discard("k" * 30)
    recent.discard("never put")

    assert recent.bytes == 0
    assert len(recent) == 0


def test_the_taken_map_stays_within_its_byte_bound_whatever_the_key_lengths() -> None:
    taken: Recent[tuple[str, str], bool] = Recent(65_536, 3600.0, max_bytes=TAKEN_MAX_BYTES, size_of=taken_entry_size)
    connection_id = "conn_01M8PVN9SQX10QBWTQBCGHCYY8"

    for number in range(20_000):
        taken.put((connection_id, f"event:{number}:" + "x" * 1000), True)

    assert taken.bytes <= TAKEN_MAX_BYTES
    assert 0 < len(taken) < 20_000
    assert taken.get((connection_id, "event:19999:" + "x" * 1000))


def test_the_entry_bound_still_holds_without_sizes() -> None:
    recent: Recent[int, int] = Recent(3, 3600.0)

    for number in range(5):
        recent.put(number, number)

    assert len(recent) == 3
    assert recent.get(0) is None and recent.get(4) == 4

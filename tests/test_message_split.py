"""Splitting long outbound texts at natural boundaries, in order, within a platform's limit."""

from __future__ import annotations

import pytest

from chatbox.domain.message_split import split_text, utf16_length


def test_short_text_is_one_part() -> None:
    assert split_text("hello", 4096) == ["hello"]


def test_paragraph_breaks_win_over_line_breaks_and_spaces() -> None:
    text = "first para line one\nline two\n\nsecond para"

    assert split_text(text, 30) == ["first para line one\nline two", "second para"]


def test_line_breaks_win_over_spaces() -> None:
    assert split_text("one two three\nfour five", 16) == ["one two three", "four five"]


def test_words_are_kept_whole_when_no_line_break_fits() -> None:
    assert split_text("alpha beta gamma delta", 11) == ["alpha beta", "gamma delta"]


def test_a_word_longer_than_the_limit_is_cut() -> None:
    assert split_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_a_boundary_right_at_the_limit_is_used() -> None:
    assert split_text("abcd\n\nefgh", 4) == ["abcd", "efgh"]


def test_every_part_fits_and_nothing_is_lost_or_reordered() -> None:
    words = [f"word{i}" for i in range(3000)]
    text = "\n\n".join(" ".join(words[i : i + 50]) for i in range(0, 3000, 50))

    parts = split_text(text, 4096, utf16_length)

    assert all(utf16_length(part) <= 4096 for part in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(words)
    assert len(parts) > 1


def test_telegram_counts_utf16_units_so_emoji_count_twice() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units

    parts = split_text(text, 4096, utf16_length)

    assert [utf16_length(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text("x", 0)

"""The one settings object: `chatbox dev`'s defaults are expressed as settings, never by editing the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatbox.domain.settings import DevSettings, Settings

LOOPBACK = "CHATBOX_ALLOW_LOOPBACK_WEBHOOKS"


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory is an empty folder (no `.env`) and the loopback variable is unset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(LOOPBACK, raising=False)
    return tmp_path


def test_dev_settings_allow_loopback_webhooks_without_touching_the_environment(empty_folder: Path) -> None:
    before = dict(os.environ)

    dev = DevSettings()

    assert dev.allow_loopback_webhooks is True
    assert Settings().allow_loopback_webhooks is False
    assert dict(os.environ) == before


def test_dev_settings_follow_an_explicit_refusal_in_the_environment(
    empty_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOOPBACK, "0")

    assert DevSettings().allow_loopback_webhooks is False


def test_dev_settings_follow_an_explicit_refusal_in_dotenv(empty_folder: Path) -> None:
    (empty_folder / ".env").write_text(f"{LOOPBACK}=0\n")

    assert DevSettings().allow_loopback_webhooks is False

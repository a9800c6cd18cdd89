"""Shared fixtures. Every person in these tests is invented."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.dialogue_files import build_engine
from bot.local_api import LocalBotApi
from bot.settings import PROJECT_ROOT
from state_machines.engine import Engine
from tests.harness import TOKEN
from tests.log_privacy import LogPrivacy

DIALOGUES_DIR = PROJECT_ROOT / "dialogues"


def pytest_configure(config: pytest.Config) -> None:
    """The whole session logs at DEBUG, checked for leaks (tests/log_privacy.py)."""
    plugin = LogPrivacy(tokens=[TOKEN])
    if config.pluginmanager.register(plugin, "log_privacy"):  # `-p no:log_privacy` measures without
        plugin.start()


@pytest.fixture(scope="session")
def engine() -> Engine:
    return build_engine(DIALOGUES_DIR)


@pytest.fixture()
def dialogues_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped dialogues, for tests that break one."""
    target = tmp_path / "dialogues"
    target.mkdir()
    for source in DIALOGUES_DIR.glob("*.yaml"):
        (target / source.name).write_text(source.read_text("utf-8"), "utf-8")
    return target


@pytest.fixture()
async def api() -> AsyncIterator[LocalBotApi]:
    """The project's local Bot API server on 127.0.0.1, for one test."""
    async with LocalBotApi(token=TOKEN, bot_username="yousaid_test_bot") as server:
        yield server

"""Reading the dates staff type for a panel: what is read, and the slips that are asked
again rather than read as something else."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.datetimes import parse_local_datetime

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def read(text: str) -> datetime | None:
    moment = parse_local_datetime(text, NOW, LONDON)
    return None if moment is None else moment.astimezone(LONDON).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("3/12/2026 14:00", datetime(2026, 12, 3, 14, 0)),
        ("3 Dec 2pm", datetime(2026, 12, 3, 14, 0)),
        ("Thursday 3 December 2026 14:00", datetime(2026, 12, 3, 14, 0)),
        ("Thu 3/12/2026 14:00", datetime(2026, 12, 3, 14, 0)),
        ("Iau 3 Rhagfyr 2026 14:00", datetime(2026, 12, 3, 14, 0)),  # Welsh day and month
        ("Dydd Iau 3 Rhagfyr 2026, 14:00", datetime(2026, 12, 3, 14, 0)),  # as the bot shows
        ("Thursday 3 December 2026, 14:00", datetime(2026, 12, 3, 14, 0)),
        ("3/12/2026 14:00pm", datetime(2026, 12, 3, 14, 0)),  # a phone's slip, one meaning
        ("3/12/2026 9", datetime(2026, 12, 3, 9, 0)),
        ("3/12/2026 2pm", datetime(2026, 12, 3, 14, 0)),
        ("on 3/12/2026 14:00", datetime(2026, 12, 3, 14, 0)),  # a word that is no day name
    ],
)
def test_what_is_read(typed: str, meant: datetime) -> None:
    assert read(typed) == meant


@pytest.mark.parametrize(
    "typed",
    [
        "3/12/2026 2",  # 2 in the morning? Surely 2pm: asked again, not read as 02:00
        "3/12/2026 00:30",
        "Thursday 4 December 2026 14:00",  # the 4th is a Friday: which was meant?
        "Dydd Mercher 3 Rhagfyr 2026, 14:00",  # Wednesday, in Welsh: the 3rd is a Thursday
        "3/12/2026 14:00am",
        "next week sometime",
    ],
)
def test_slips_are_asked_again(typed: str) -> None:
    assert read(typed) is None

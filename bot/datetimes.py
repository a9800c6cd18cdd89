"""Reading and writing panel dates as people type and read them, in Europe/London.

Staff type a date the way people in the UK write one ("3/12/2026 14:00", "3 Dec 2pm",
"3 Rhagfyr 2026 14:00"); it is stored as UTC milliseconds and shown to each person in
their own language with Babel. A wall-clock time that does not exist (the hour the clocks
go forward) is refused rather than silently moved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, get_day_names, get_month_names

from storage.clock import Clock

# How far ahead a panel may be planned: further than this is almost surely a typo.
_MAX_AHEAD = timedelta(days=2 * 366)

_DATE_NUMERIC = r"(?P<day>\d{1,2})[/.\-](?P<month>\d{1,2})(?:[/.\-](?P<year>\d{2}|\d{4}))?"
_DATE_ISO = r"(?P<iyear>\d{4})-(?P<imonth>\d{1,2})-(?P<iday>\d{1,2})"
_DATE_WORDS = (
    r"(?P<wday>\d{1,2})(?:st|nd|rd|th|af|ydd|il|ed|fed)?"  # 3rd, 3ydd
    r"\s+(?P<wmonth>[^\W\d_]+)\.?(?:\s+(?P<wyear>\d{4}))?"  # December 2026, Rhag.
)
_TIME = r"(?P<hour>\d{1,2})(?:[:.](?P<minute>\d{2}))?\s*(?P<ampm>am|pm|a\.m\.|p\.m\.|yb|yh)?"
_PATTERN = re.compile(
    # "Dydd Iau 3 Rhagfyr 2026, 14:00": the bot's own Welsh dates start with "Dydd".
    rf"^(?:(?:dydd\s+)?(?P<weekday>\w+),?\s+)??(?:{_DATE_ISO}|{_DATE_NUMERIC}|{_DATE_WORDS})"
    rf"(?:,?\s+(?:at\s+|am\s+)?{_TIME})$",
    re.IGNORECASE,
)
# Before this hour, a time with no am or pm is almost surely a slip ("3/12/2026 2" for 2pm):
# asked again rather than read as the middle of the night.
_EARLIEST_UNMARKED_HOUR = 7


def _month_numbers() -> dict[str, int]:
    """Month names and abbreviations in English and Welsh, lower case, to numbers."""
    names: dict[str, int] = {}
    for locale in ("en", "cy"):
        for width in ("wide", "abbreviated"):
            for number, name in get_month_names(width, locale=locale).items():
                names[str(name).lower().rstrip(".")] = int(number)
    names["sept"] = 9
    return names


_MONTHS = _month_numbers()


def _weekday_numbers() -> dict[str, int]:
    """Day names and abbreviations in English and Welsh, lower case, to Monday = 0."""
    names: dict[str, int] = {}
    for locale in ("en", "cy"):
        for width in ("wide", "abbreviated"):
            for number, name in get_day_names(width, locale=locale).items():
                day = str(name).lower().rstrip(".")
                names[day] = int(number)
                names[day.removeprefix("dydd ")] = int(number)  # "Mercher" of "Dydd Mercher"
    return names


_WEEKDAYS = _weekday_numbers()


def parse_local_datetime(text: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """The future moment `text` names in `zone`, as an aware UTC datetime; None when it
    cannot be read, does not exist, is past, or is implausibly far ahead. A date without
    a year means its next occurrence."""
    match = _PATTERN.match(" ".join(text.split()))
    if match is None:
        return None
    parts = match.groupdict()
    try:
        if parts["iyear"]:
            year, month, day = int(parts["iyear"]), int(parts["imonth"]), int(parts["iday"])
            year_given = True
        elif parts["day"]:
            day, month = int(parts["day"]), int(parts["month"])
            year_given = parts["year"] is not None
            year = int(parts["year"] or 0)
        else:
            day = int(parts["wday"])
            month = _MONTHS.get(parts["wmonth"].lower(), 0)
            year_given = parts["wyear"] is not None
            year = int(parts["wyear"] or 0)
        hour, minute = int(parts["hour"]), int(parts["minute"] or 0)
    except (TypeError, ValueError):
        return None
    ampm = (parts["ampm"] or "").lower().replace(".", "")
    clock_hour = _twenty_four_hour(hour, ampm)
    if clock_hour is None or not 1 <= month <= 12:
        return None
    if not ampm and clock_hour < _EARLIEST_UNMARKED_HOUR:
        return None
    if year_given and year < 100:
        year += 2000
    local_now = now.astimezone(zone)
    candidates = [year] if year_given else [local_now.year, local_now.year + 1]
    named_day = _WEEKDAYS.get((parts["weekday"] or "").lower().rstrip("."))
    for candidate_year in candidates:
        moment = _existing_local(candidate_year, month, day, clock_hour, minute, zone)
        if moment is not None and moment > now:
            if named_day is not None and moment.astimezone(zone).weekday() != named_day:
                return None  # "Thursday 4 December" when the 4th is a Friday: which?
            return moment if moment - now <= _MAX_AHEAD else None
    return None


def _twenty_four_hour(hour: int, ampm: str) -> int | None:
    if ampm in ("am", "yb"):
        return None if not 1 <= hour <= 12 else hour % 12
    if ampm in ("pm", "yh"):
        if 13 <= hour <= 23:
            return hour  # "14:00pm", typed on a phone: the same afternoon
        return None if not 1 <= hour <= 12 else hour % 12 + 12
    return hour if 0 <= hour <= 23 else None


def _existing_local(
    year: int, month: int, day: int, hour: int, minute: int, zone: ZoneInfo
) -> datetime | None:
    """The UTC moment of a wall-clock time in `zone`, or None if there is no such time
    (an impossible date, or the hour skipped when the clocks go forward)."""
    try:
        wall = datetime(year, month, day, hour, minute, tzinfo=zone)
    except ValueError:
        return None
    moment = wall.astimezone(UTC)
    if moment.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
        return None
    return moment


def datetime_parser(clock: Clock, zone_name: str) -> Callable[[str], str | None]:
    """The engine's parser for `kind: datetime`: UTC milliseconds, as text."""
    zone = ZoneInfo(zone_name)

    def parse(text: str) -> str | None:
        now = datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC)
        moment = parse_local_datetime(text, now, zone)
        return None if moment is None else str(int(moment.timestamp() * 1000))

    return parse


def format_moment(ms: int, locale: str, zone_name: str) -> str:
    """A moment as a person reads it in their language, e.g. "Thursday 3 December 2026,
    14:00" or "Dydd Iau 3 Rhagfyr 2026, 14:00" (24-hour clock, as UK services write)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return format_datetime(
        moment, "EEEE d MMMM y, HH:mm", tzinfo=ZoneInfo(zone_name), locale=locale
    )

"""Turn engine effects into Bot API payloads, in the person's language."""

from __future__ import annotations

import gettext
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from babel.support import Translations

from state_machines.definition import CONSENT_PURPOSES
from state_machines.events import Say

TELEGRAM_MAX_TEXT = 4096


class _KeepMissing(dict[str, str]):
    """Leave an unknown {placeholder} visible rather than failing a message to a person."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Catalogs:
    """Compiled gettext catalogs, loaded once, by locale."""

    def __init__(self, locales_dir: Path, locales: tuple[str, ...]) -> None:
        self._by_locale: dict[str, gettext.NullTranslations] = {}
        for locale in locales:
            self._by_locale[locale] = Translations.load(str(locales_dir), [locale], "messages")

    def gettext(self, locale: str, msgid: str) -> str:
        translations = self._by_locale.get(locale)
        return msgid if translations is None else translations.gettext(msgid)


def fill(template: str, params: Mapping[str, str]) -> str:
    """str.format with named fields only, leaving unknown ones as they are."""
    return string.Formatter().vformat(template, (), _KeepMissing(params))


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def render_message(
    say: Say, locale: str, catalogs: Catalogs, context: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One Say effect as one or more sendMessage payloads (split if over Telegram's cap);
    the buttons go on the last part."""
    params = {**context, **say.params}
    text = fill(catalogs.gettext(locale, say.text), params)
    if say.lead:
        text = fill(catalogs.gettext(locale, say.lead), params) + "\n\n" + text
    keyboard = [
        [
            {"text": catalogs.gettext(locale, b.label), "callback_data": b.token}
            for b in say.buttons[row : row + say.columns]
        ]
        for row in range(0, len(say.buttons), say.columns)
    ]
    parts = split_text(text)
    payloads: list[dict[str, Any]] = [{"text": part} for part in parts]
    if keyboard:
        payloads[-1]["buttons"] = keyboard
    return payloads


def split_payload(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A sendMessage payload as one or more, none over Telegram's cap, the buttons (and any
    other keys) on the last part: a relayed message has no length limit of its own (a
    long reply typed to the duty staff), and Telegram refuses one over the cap outright."""
    text = str(payload.get("text", ""))
    if len(text) <= TELEGRAM_MAX_TEXT:
        return [dict(payload)]
    *first, last = split_text(text)
    return [*({"text": part} for part in first), {**payload, "text": last}]


def split_text(text: str, limit: int = TELEGRAM_MAX_TEXT) -> list[str]:
    """Split at paragraph, then line, then word boundaries so no part exceeds `limit`."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = max(
            rest.rfind("\n\n", 0, limit), rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit)
        )
        cut = cut if cut > limit // 2 else limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [*parts, rest] if rest else parts or [""]


def consent_summary(
    current: Mapping[str, bool], locale: str, catalogs: Catalogs, messages: Mapping[str, str]
) -> str:
    """One line per purpose, e.g. 'Keep my answers: yes', for /privacy."""
    lines = []
    for purpose in CONSENT_PURPOSES:
        if purpose in current:
            status_key = "consent_yes" if current[purpose] else "consent_no"
        else:
            status_key = "consent_not_asked"
        status = catalogs.gettext(locale, messages[status_key])
        line = catalogs.gettext(locale, messages[f"consent_line_{purpose}"])
        lines.append("• " + fill(line, {"status": status}))
    return "\n".join(lines)

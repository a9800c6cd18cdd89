"""Quotes for a digest: a few consented, scrubbed answers for each theme it publishes.

Quotes are read afresh whenever a digest is written out, never stored with a released
digest: a person who withdraws the quote consent or is forgotten has their quotes set to
NULL at once (storage/answers.py, storage/erasure.py), and no later digest may bring one
back. Only themes whose count the digest publishes get quotes, so a quote never stands for
a group of fewer than k people.
"""

from __future__ import annotations

from collections.abc import Callable

import aiosqlite

from bot.digest import Digest
from bot.digest_figures import PEOPLE
from storage.digest_data import DigestFigures

QUOTES_PER_THEME = 3


# How old an answer must be to be quoted: as /review waits (bot/review.py's window).
QUOTE_DELAY_MS = 2 * 86_400_000


async def read_quotes(
    conn: aiosqlite.Connection,
    digest: Digest,
    zone: str,
    decrypt: Callable[[bytes], str],
    per_theme: int = QUOTES_PER_THEME,
    now: int | None = None,
) -> dict[str, list[str]]:
    """Theme label -> at most `per_theme` quotes of the digest's week and region, newest
    first, for the themes the digest publishes, in the digest's order of themes. With
    `now`, only answers at least QUOTE_DELAY_MS old: the digest goes out on Monday
    morning, and Sunday night's words could be placed by the officer who supervises their
    writer (as in /review, quotes wait two days; a later look at the week shows them)."""
    published = {
        row.key: row.label
        for row in digest.section("themes").rows
        if row.key != PEOPLE and row.cells and not row.cells[0].suppressed
    }
    if not published:
        return {}
    found: dict[str, list[str]] = {}
    async with DigestFigures(conn) as figures:
        before = None if now is None else now - QUOTE_DELAY_MS
        quotes = await figures.quotes(digest.region, digest.week, zone, per_theme, before)
    for theme, ciphertext in quotes:
        if theme in published:
            found.setdefault(theme, []).append(decrypt(ciphertext))
    return {published[t]: found[t] for t in published if t in found}

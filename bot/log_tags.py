"""How a person appears in the logs: a tag that is the same all through one run of the bot
(so one person's lines can be followed while debugging) and links to no one after it.

A pseudonym is stable and derived from the Telegram id with the key kept beside the
database, so a pseudonym (or its start) in a log that outlives the run, or the person's
erasure, could be matched to them. The tag is keyed with a secret made at start and never
written anywhere.
"""

from __future__ import annotations

import hashlib
import secrets

_RUN_KEY = secrets.token_bytes(16)


def person_tag(pseudonym: str) -> str:
    """A short tag for `pseudonym`, stable within this run only."""
    return hashlib.blake2s(pseudonym.encode(), key=_RUN_KEY, digest_size=5).hexdigest()

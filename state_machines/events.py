"""What a person did (events in) and what the bot must do about it (effects out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from state_machines.definition import EffectSpec


# --- events: the adapter turns each Telegram update into one of these -------------------
@dataclass(frozen=True)
class Started:
    """`/start`, with the deep-link payload if there was one, whether it was redeemed, and
    what redeeming it established (e.g. "region_known")."""

    payload: str | None = None
    payload_accepted: bool = False
    facts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ButtonPressed:
    """An inline button was tapped; `token` is its callback_data."""

    token: str


@dataclass(frozen=True)
class TextSent:
    """A plain text message (not a command)."""

    text: str


@dataclass(frozen=True)
class CommandSent:
    """A slash command other than /start (or the word STOP, which means /stop), with the
    roles the sender holds (for commands that require one)."""

    name: str
    roles: frozenset[str] = frozenset()
    # The person has answered a consent question, so read the notice before it (for
    # commands only someone signed up may use: see Command.signed_up).
    consented: bool = False
    # The regions the sender acts for as staff (every one for an admin): a dialogue the
    # command starts offers only these where it asks for an area (State.own_regions).
    regions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Begin:
    """The application starts a dialogue with values already known, e.g. "change the date
    of panel 7" after the application checked the person may."""

    dialogue: str
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class UnsupportedSent:
    """A sticker, photo, voice note or anything else the bot cannot read."""

    kind: str


@dataclass(frozen=True)
class Abandon:
    """The application closes a dialogue the person did not finish (e.g. a check-in that
    expired): it is left silently, and the person is back where they were before it."""

    dialogue: str


Event = Started | ButtonPressed | TextSent | CommandSent | UnsupportedSent | Begin | Abandon


# --- effects: what one step asks the outer layers to do --------------------------------
@dataclass(frozen=True)
class ButtonView:
    """A button as shown: its opaque callback token and its (untranslated) label."""

    token: str
    label: str


@dataclass(frozen=True)
class Say:
    """Send a message. `text` is an English msgid; placeholders are filled by the adapter.

    `lead` is an optional sentence shown first in the same message (e.g. "Please tap a
    button."), so a correction and the re-asked question arrive as one message.
    """

    text: str
    buttons: tuple[ButtonView, ...] = ()
    columns: int = 1
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    lead: str | None = None
    # The values the dialogue has remembered so far, for placeholders such as {title}.
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Shown in place of the message whose button was tapped (when there is one), e.g. a
    # question that stays open while choices are ticked.
    in_place: bool = False


@dataclass(frozen=True)
class Apply:
    """Carry out a data effect (consent, region, answer) declared in the dialogue."""

    effect: EffectSpec
    value: str | None = None  # the free text, for StoreAnswer
    dialogue: str | None = None  # the dialogue the answer belongs to, for StoreAnswer
    # The dialogue's remembered values, for Submit.
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ConfirmChoice:
    """Mark the tapped question as answered (the adapter removes its buttons)."""

    label: str


@dataclass(frozen=True)
class DialogueEnded:
    """A dialogue reached an end state (for counting completions)."""

    dialogue: str


Effect = Say | Apply | ConfirmChoice | DialogueEnded

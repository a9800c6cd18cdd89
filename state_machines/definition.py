"""Frozen, validated dialogue definitions: what a YAML dialogue file becomes once loaded.

Texts are English source strings (gettext msgids); the adapter translates them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# The consent purposes of the notice (BRIEF.md): separate, specific, withdrawable.
CONSENT_PURPOSES: tuple[str, ...] = ("feedback", "panel_invitations", "updates", "quotes")

# The 12 probation regions of England and Wales, by stable slug.
REGION_SLUGS: tuple[str, ...] = (
    "north-east",
    "north-west",
    "greater-manchester",
    "yorkshire-humber",
    "wales",
    "west-midlands",
    "east-midlands",
    "east-of-england",
    "london",
    "kent-surrey-sussex",
    "south-west",
    "south-central",
)

# The languages a person can choose (gettext locale codes): English and Welsh.
LANGUAGES: tuple[str, ...] = ("en", "cy")

# The roles a command can require (staff includes managers and admins of a region).
ROLES: tuple[str, ...] = ("staff", "manager", "admin")

# How a typed answer is read: as it is, as a whole number, or as a date and time. The
# engine is given one parser per kind; a reply that does not parse is asked again.
INPUT_KINDS: tuple[str, ...] = ("text", "number", "datetime")

# The id of the automatic "I don't understand" button on states that have an `explain` text.
EXPLAIN_BUTTON_ID = "explain"
EXPLAIN_BUTTON_LABEL = "I don't understand"


@dataclass(frozen=True)
class GrantConsent:
    """Record a consent decision for one purpose."""

    purpose: str
    granted: bool


@dataclass(frozen=True)
class SetRegion:
    """Bind the person to a probation region ("": forget it, they would rather not say)."""

    region: str


@dataclass(frozen=True)
class SetLocale:
    """Switch the language the person is written to in."""

    locale: str


@dataclass(frozen=True)
class WithdrawAllConsents:
    """Withdraw every consent and stop all messages."""


@dataclass(frozen=True)
class StoreAnswer:
    """Store the free-text answer of the current state under a key."""

    key: str


@dataclass(frozen=True)
class SetValue:
    """Remember a value for the rest of this dialogue (e.g. a panel's place: online)."""

    name: str
    value: str


@dataclass(frozen=True)
class ToggleValue:
    """Add a value to a remembered list, or take it out again (e.g. support offered)."""

    name: str
    value: str


@dataclass(frozen=True)
class Submit:
    """Hand the dialogue's remembered values to the application to act on, e.g. create
    a panel. The application checks the person may do it and answers for itself."""

    action: str


EffectSpec = (
    GrantConsent
    | SetRegion
    | SetLocale
    | WithdrawAllConsents
    | StoreAnswer
    | SetValue
    | ToggleValue
    | Submit
)


@dataclass(frozen=True)
class Button:
    """One inline button of a state: a stable id, a label and where it leads."""

    id: str
    label: str
    to: str | None  # None: stay in the same state (re-ask)
    effects: tuple[EffectSpec, ...] = ()


@dataclass(frozen=True)
class TextInput:
    """A state that accepts free text, with a length cap. `kind` says how to read it and
    `save_as` remembers the read value for the rest of the dialogue."""

    max_length: int
    to: str
    effects: tuple[EffectSpec, ...] = ()
    kind: str = "text"
    save_as: str | None = None


@dataclass(frozen=True)
class State:
    """One step of a dialogue: what the bot says and how the person can answer."""

    name: str
    line: int
    say: str
    buttons: tuple[Button, ...] = ()
    columns: int = 1
    explain: str | None = None
    text: TextInput | None = None
    end: bool = False
    skip: tuple[str, str] | None = None  # (fact, target): go straight to target if fact holds
    # An end where the person said no to taking part (e.g. at the notice): the dialogue is
    # not done, and writing does not start it again, as after /stop; /start does.
    declines: bool = False
    # Staff choose among the areas they act for: each button sets a region, and only those
    # of the sender's areas are offered (with one, it is chosen without asking). Offering
    # all 12 lost the form at "Send" for a wrong one (the application refuses it there).
    own_regions: bool = False

    def button(self, button_id: str) -> Button | None:
        """The button with this id, including the automatic "I don't understand"."""
        for candidate in self.all_buttons():
            if candidate.id == button_id:
                return candidate
        return None

    def all_buttons(self) -> tuple[Button, ...]:
        """The buttons shown to the person: the state's own, then "I don't understand"."""
        if self.explain is None:
            return self.buttons
        return (*self.buttons, Button(EXPLAIN_BUTTON_ID, EXPLAIN_BUTTON_LABEL, None))


def region_of(button: Button) -> str | None:
    """The region a button sets (by `set_region`, or `set` to a region slug), if any."""
    for effect in button.effects:
        if isinstance(effect, SetRegion):
            return effect.region or None
        if isinstance(effect, SetValue) and effect.value in REGION_SLUGS:
            return effect.value
    return None


@dataclass(frozen=True)
class Command:
    """A slash command that works in every state of the dialogues that see it."""

    name: str
    line: int
    say: str | None = None
    start: str | None = None  # start this dialogue, then return to where the person was
    effects: tuple[EffectSpec, ...] = ()
    end_all: bool = False  # end every dialogue in progress (e.g. /stop)
    requires: str | None = None  # a role (staff, manager, admin); others are told "not available"
    # Only for someone who signed up or answered a consent question (e.g. /privacy: a
    # consent is recorded against the notice read, so who has not read it is sent to /start).
    signed_up: bool = False
    # Said after `say` to anyone with a staff role (e.g. /help: the staff commands too).
    staff_say: str | None = None


@dataclass(frozen=True)
class Dialogue:
    """A whole dialogue: states reachable from `start`, plus its own commands."""

    id: str
    schema_version: int
    source: str
    start: str | None
    states: Mapping[str, State]
    commands: Mapping[str, Command] = field(default_factory=lambda: MappingProxyType({}))
    messages: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    settings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def button_token(dialogue_id: str, state: str, button_id: str) -> str:
    """The opaque callback_data for a button: short, stable across restarts, never raw state.

    Telegram caps callback_data at 64 bytes; 16 hex characters of a hash keep it short and
    let the engine tell a current button from an old or forged one.
    """
    digest = hashlib.blake2b(f"{dialogue_id}/{state}/{button_id}".encode(), digest_size=8)
    return "b" + digest.hexdigest()

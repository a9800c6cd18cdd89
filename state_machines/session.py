"""A person's place in the dialogues: small, immutable and serialisable to one table row."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Place:
    """A dialogue and a state within it."""

    dialogue: str
    state: str


@dataclass(frozen=True)
class Session:
    """Where one person is. `place` is None when no dialogue is in progress.

    `resume` is a stack of places to return to when a sub-dialogue (e.g. /privacy) ends.
    `completed` names the dialogues this person has finished, so /start knows a returning
    person from a new one.
    """

    place: Place | None = None
    resume: tuple[Place, ...] = ()
    completed: frozenset[str] = field(default_factory=frozenset)
    # Things the outer layers established that let a dialogue skip a question, e.g.
    # "region_known" after an enrolment code bound the person to a region.
    facts: frozenset[str] = field(default_factory=frozenset)

    def at(self, place: Place | None) -> Session:
        return replace(self, place=place)

    def to_json(self) -> str:
        return json.dumps(
            {
                "place": _place_json(self.place),
                "resume": [_place_json(p) for p in self.resume],
                "completed": sorted(self.completed),
                "facts": sorted(self.facts),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Session:
        data = json.loads(text)
        return cls(
            place=_place_from(data.get("place")),
            resume=tuple(p for p in (_place_from(x) for x in data.get("resume", [])) if p),
            completed=frozenset(data.get("completed", [])),
            facts=frozenset(data.get("facts", [])),
        )


def _place_json(place: Place | None) -> list[str] | None:
    return None if place is None else [place.dialogue, place.state]


def _place_from(value: object) -> Place | None:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return Place(value[0], value[1])
    return None

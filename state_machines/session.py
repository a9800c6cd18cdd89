"""A person's place in the dialogues: small, immutable and serialisable to one table row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType


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
    # Values a dialogue remembers until it ends (a panel's title, date...), keyed
    # "<dialogue>.<name>" so a sub-dialogue such as /language cannot overwrite them.
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def at(self, place: Place | None) -> Session:
        return replace(self, place=place)

    def values_of(self, dialogue: str) -> Mapping[str, str]:
        """The values one dialogue has remembered, by name."""
        prefix = f"{dialogue}."
        return MappingProxyType(
            {k[len(prefix) :]: v for k, v in self.values.items() if k.startswith(prefix)}
        )

    def with_values(self, dialogue: str, values: Mapping[str, str]) -> Session:
        """This session with one dialogue's values replaced by `values`."""
        prefix = f"{dialogue}."
        kept = {k: v for k, v in self.values.items() if not k.startswith(prefix)}
        kept.update({f"{prefix}{k}": v for k, v in values.items()})
        return replace(self, values=MappingProxyType(kept))

    def to_json(self) -> str:
        return json.dumps(
            {
                "place": _place_json(self.place),
                "resume": [_place_json(p) for p in self.resume],
                "completed": sorted(self.completed),
                "facts": sorted(self.facts),
                **({"values": dict(sorted(self.values.items()))} if self.values else {}),
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
            values=MappingProxyType(
                {str(k): str(v) for k, v in dict(data.get("values") or {}).items()}
            ),
        )


def _place_json(place: Place | None) -> list[str] | None:
    return None if place is None else [place.dialogue, place.state]


def _place_from(value: object) -> Place | None:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return Place(value[0], value[1])
    return None

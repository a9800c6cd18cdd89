"""The dialogue engine: `step(session, event)` returns the next session and the effects.

Pure and synchronous. One `transitions.Machine` is built per dialogue definition and used to
step a throwaway stepper object per event, so no model per person is kept in memory
(transitions' `add_model` grows quadratically with many models).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from transitions import Machine

from state_machines.definition import (
    EXPLAIN_BUTTON_ID,
    Button,
    Command,
    Dialogue,
    EffectSpec,
    SetValue,
    State,
    Submit,
    ToggleValue,
    WithdrawAllConsents,
    button_token,
    region_of,
)
from state_machines.events import (
    Abandon,
    Apply,
    Begin,
    ButtonPressed,
    ButtonView,
    CommandSent,
    ConfirmChoice,
    DialogueEnded,
    Effect,
    Event,
    Say,
    Started,
    TextSent,
    UnsupportedSent,
)
from state_machines.session import Place, Session

# Messages the engine itself needs; they live in the common dialogue file as data.
REQUIRED_MESSAGES = (
    "already_started",
    "welcome_back",
    "code_not_recognised",
    "old_button",
    "use_buttons",
    "too_long",
    "unsupported_content",
    "unknown_command",
    "nothing_in_progress",
    "nothing_after_stop",
    "lost_place",
    "code_accepted",
    "not_available",
    "sign_up_first",
)

# A session fact: the person said /stop (withdrew every consent). Writing afterwards does not
# begin onboarding again, as it does for someone new; /start does, and forgets the fact.
WITHDREW = "withdrew"

# The value a staff command's dialogue remembers the sender's regions under (comma-separated),
# for the states that offer only those (State.own_regions).
ACTING_REGIONS = "acting_regions"

# Reads a typed answer of one kind: the value to remember, or None to ask again.
Parser = Callable[[str], str | None]

# The most a number answer may be (e.g. a panel's capacity).
MAX_NUMBER = 100_000


def parse_text(text: str) -> str | None:
    """Free text, as typed (without surrounding blanks)."""
    return text.strip() or None


def parse_number(text: str) -> str | None:
    """A whole number from 1 to MAX_NUMBER, e.g. "20" or " 1,000 "."""
    digits = text.strip().replace(",", "")
    if not digits.isdigit() or not 1 <= int(digits) <= MAX_NUMBER:
        return None
    return str(int(digits))


class EngineError(Exception):
    """The set of dialogues does not fit together (e.g. a command starts a missing dialogue)."""


@dataclass(frozen=True)
class Step:
    """The outcome of one event: the session to store and the effects to carry out."""

    session: Session
    effects: tuple[Effect, ...]


@dataclass
class _Stepper:
    """The throwaway model a machine steps: just a state name."""

    state: str


@dataclass
class _Out:
    session: Session
    effects: list[Effect] = field(default_factory=list)

    def say(self, text: str, **params: str) -> None:
        self.effects.append(Say(text, params=MappingProxyType(params)))


class Engine:
    """Steps sessions through a fixed set of dialogues."""

    def __init__(
        self,
        dialogues: Mapping[str, Dialogue],
        *,
        entry: str = "onboarding",
        common: str = "common",
        parsers: Mapping[str, Parser] | None = None,
    ) -> None:
        self.dialogues = MappingProxyType(dict(dialogues))
        self._parsers: dict[str, Parser] = {"text": parse_text, "number": parse_number}
        self._parsers.update(parsers or {})
        if entry not in dialogues or dialogues[entry].start is None:
            raise EngineError(f"the entry dialogue '{entry}' is missing or has no states")
        if common not in dialogues:
            raise EngineError(f"the common dialogue '{common}' is missing")
        self.entry = entry
        self.common = dialogues[common]
        missing = [m for m in REQUIRED_MESSAGES if m not in self.common.messages]
        if missing:
            raise EngineError(f"{self.common.source}: messages missing: {', '.join(missing)}")
        self._check_commands()
        self._check_inputs()
        self._machines = {d.id: _build_machine(d) for d in dialogues.values() if d.start}
        self._buttons: dict[str, tuple[str, str, str]] = {}
        for dialogue in dialogues.values():
            for state in dialogue.states.values():
                for button in state.all_buttons():
                    token = button_token(dialogue.id, state.name, button.id)
                    if token in self._buttons:
                        raise EngineError(f"button token collision at {dialogue.id}/{state.name}")
                    self._buttons[token] = (dialogue.id, state.name, button.id)

    def _check_commands(self) -> None:
        for dialogue in self.dialogues.values():
            for command in dialogue.commands.values():
                if command.start is not None and (
                    command.start not in self.dialogues
                    or self.dialogues[command.start].start is None
                ):
                    raise EngineError(
                        f"{dialogue.source}:{command.line}: /{command.name}: "
                        f"starts '{command.start}', which has no states"
                    )

    def _check_inputs(self) -> None:
        """Every kind of typed answer used has a parser and a message for a bad answer."""
        for dialogue in self.dialogues.values():
            for state in dialogue.states.values():
                kind = state.text.kind if state.text else "text"
                if kind not in self._parsers:
                    raise EngineError(
                        f"{dialogue.source}:{state.line}: {state.name}: "
                        f"no parser for answers of kind '{kind}'"
                    )
                if kind != "text" and f"invalid_{kind}" not in self.common.messages:
                    raise EngineError(
                        f"{self.common.source}: message 'invalid_{kind}' missing "
                        f"(used by {dialogue.id}/{state.name})"
                    )

    def message(self, key: str) -> str:
        """A shared message of the common file, by key."""
        return self.common.messages[key]

    def step(self, session: Session, event: Event) -> Step:
        """Apply one event to one session."""
        out = _Out(self._normalise(session))
        if out.session is not session and session.place is not None:
            out.say(self.message("lost_place"))
        if isinstance(event, Started):
            self._on_start(out, event)
        elif isinstance(event, ButtonPressed):
            self._on_button(out, event)
        elif isinstance(event, TextSent):
            self._on_text(out, event)
        elif isinstance(event, CommandSent):
            self._on_command(out, event)
        elif isinstance(event, UnsupportedSent):
            specific = f"unsupported_{event.kind}"
            lead = specific if specific in self.common.messages else "unsupported_content"
            self._reask(out, lead=lead)
        elif isinstance(event, Begin):
            self._on_begin(out, event)
        elif isinstance(event, Abandon):
            self._on_abandon(out, event)
        return Step(out.session, tuple(out.effects))

    def current_question(self, session: Session) -> Say | None:
        """The question the person is being asked now, e.g. to re-ask it after /help."""
        session = self._normalise(session)
        return None if session.place is None else self._question(session.place, session)

    # --- event handlers ----------------------------------------------------------------
    def _on_start(self, out: _Out, event: Started) -> None:
        if event.payload and not event.payload_accepted:
            out.say(self.message("code_not_recognised"))
        elif event.payload:
            out.say(self.message("code_accepted"))
        out.session = replace(out.session, facts=(out.session.facts - {WITHDREW}) | event.facts)
        if out.session.place is not None:
            self._reask(out, lead="already_started")
        elif self.entry in out.session.completed:
            out.say(self.message("welcome_back"))
        else:
            self._enter(out, Place(self.entry, self._start_of(self.entry)))

    def _on_button(self, out: _Out, event: ButtonPressed) -> None:
        token, _, fingerprint = event.token.partition(".")
        target = self._buttons.get(token)
        place = out.session.place
        if (
            target is None
            or place is None
            or (place.dialogue, place.state) != target[:2]
            or fingerprint != values_fingerprint(out.session.values_of(place.dialogue))
        ):
            # An old message's button, or one shown for other values (e.g. "Yes, cancel
            # it" under the question about another panel): never acted on.
            self._reask(out, lead="old_button")
            return
        state = self._state(place)
        button = state.button(target[2])
        assert button is not None  # tokens are only made for existing buttons
        if state.own_regions and button not in self._offered(
            state, out.session.values_of(place.dialogue)
        ):
            # Another area's button (tokens are hashes of public names, so one can be made):
            # the application would refuse it at the end, after the whole form.
            self._reask(out, lead="old_button")
            return
        if button.id == EXPLAIN_BUTTON_ID:
            # The explanation first, then the question again with its buttons: someone who
            # did not understand answers the question, not a statement under the buttons.
            question = self._question(place, out.session)
            if state.explain:
                question = replace(question, lead=state.explain)
            out.effects.append(question)
            return
        stepper = _Stepper(place.state)
        self._machines[place.dialogue].events[f"press_{button.id}"].trigger(stepper)
        if button.to is None:
            # A choice that stays on the question (ticking a theme): the question is shown
            # again with the choice made, in place of the tapped one, not below it each time.
            self._apply_all(out, place.dialogue, button.effects)
            out.effects.append(replace(self._question(place, out.session), in_place=True))
            return
        out.effects.append(ConfirmChoice(button.label))
        self._apply_all(out, place.dialogue, button.effects)
        self._enter(out, Place(place.dialogue, stepper.state))

    def _on_text(self, out: _Out, event: TextSent) -> None:
        place = out.session.place
        if place is None:
            if WITHDREW in out.session.facts:
                # Said /stop: not signed up again by writing ("stop messaging me"), nor
                # told to send /stop again; /start says they want to.
                out.say(self.message("nothing_after_stop"))
            elif self.entry in out.session.completed:
                out.say(self.message("nothing_in_progress"))
            else:
                # Someone new, or starting afresh after /delete, who writes rather than
                # sending /start: begin, as /start would (the text is not an answer).
                self._enter(out, Place(self.entry, self._start_of(self.entry)))
            return
        answer = self._state(place).text
        if answer is None:
            self._reask(out, lead="use_buttons")
            return
        if len(event.text) > answer.max_length:
            self._reask(out, lead="too_long", max=str(answer.max_length))
            return
        value = self._parsers[answer.kind](event.text)
        if value is None:
            self._reask(
                out, lead="use_buttons" if answer.kind == "text" else f"invalid_{answer.kind}"
            )
            return
        if answer.save_as is not None:
            self._remember(out, place.dialogue, answer.save_as, value)
        stepper = _Stepper(place.state)
        self._machines[place.dialogue].events["text"].trigger(stepper)
        for effect in answer.effects:
            if isinstance(effect, (SetValue, ToggleValue, Submit)):
                self._apply_all(out, place.dialogue, (effect,))
            else:
                out.effects.append(Apply(effect, event.text, place.dialogue))
        self._enter(out, Place(place.dialogue, stepper.state))

    def _on_command(self, out: _Out, event: CommandSent) -> None:
        command = self._command(out.session, event.name)
        if command is None:
            self._reask(out, lead="unknown_command")
            return
        if command.requires is not None and command.requires not in event.roles:
            out.say(self.message("not_available"))
            if out.session.place is not None:
                self._reask(out)
            return
        if command.signed_up and not event.consented and self.entry not in out.session.completed:
            if out.session.place is None:
                out.say(self.message("sign_up_first"))
            else:
                self._reask(out, lead="sign_up_first")
            return
        out.effects.extend(Apply(effect) for effect in command.effects)
        if command.end_all:
            withdrew = any(isinstance(e, WithdrawAllConsents) for e in command.effects)
            completed = frozenset() if withdrew else out.session.completed
            # /cancel keeps what the session knew (e.g. the area an enrolment code gave).
            facts = frozenset({WITHDREW}) if withdrew else out.session.facts
            out.session = Session(completed=completed, facts=facts)
            if command.say:
                out.say(command.say)
            return
        if command.say:
            out.say(command.say)
        if command.staff_say and event.roles:
            out.say(command.staff_say)
        if command.start is None:
            if out.session.place is not None or not command.say:
                # The question again; with none open, /help's answer is enough ("send
                # /help to see what I can do" after it was not).
                self._reask(out)
            return
        place = out.session.place
        if place is not None and place.dialogue == command.start:
            self._reask(out)
            return
        started = self.dialogues[command.start].states.values()
        values = {}
        if event.regions and any(state.own_regions for state in started):
            values[ACTING_REGIONS] = ",".join(sorted(event.regions))
        self._begin(out, command.start, values)

    def _on_begin(self, out: _Out, event: Begin) -> None:
        if event.dialogue not in self._machines:
            self._reask(out, lead="old_button")
            return
        self._begin(out, event.dialogue, event.values)

    def _on_abandon(self, out: _Out, event: Abandon) -> None:
        session = out.session.with_values(event.dialogue, {})
        resume = tuple(p for p in session.resume if p.dialogue != event.dialogue)
        place = session.place
        if place is not None and place.dialogue == event.dialogue:
            place = resume[-1] if resume else None
            resume = resume[:-1] if resume else ()
        out.session = replace(session, place=place, resume=resume)

    def _begin(self, out: _Out, dialogue: str, values: Mapping[str, str]) -> None:
        """Start a dialogue from its start, remembering where the person was. Starting the
        dialogue the person is already in starts it afresh (e.g. for another panel)."""
        place = out.session.place
        # Begun afresh: an unfinished earlier run of it waiting on the resume stack is
        # dropped, so it can never come back with its values gone.
        resume = tuple(p for p in out.session.resume if p.dialogue != dialogue)
        if place is not None and place.dialogue != dialogue:
            resume = (*resume, place)
        out.session = replace(out.session, resume=resume).with_values(dialogue, values)
        self._enter(out, Place(dialogue, self._start_of(dialogue)))

    # --- remembered values -------------------------------------------------------------
    def _apply_all(self, out: _Out, dialogue: str, effects: tuple[EffectSpec, ...]) -> None:
        """Value effects change the session; Submit hands the values over; the rest are
        for the application."""
        for effect in effects:
            if isinstance(effect, SetValue):
                self._remember(out, dialogue, effect.name, effect.value)
            elif isinstance(effect, ToggleValue):
                chosen = set(
                    filter(None, out.session.values_of(dialogue).get(effect.name, "").split(","))
                )
                chosen ^= {effect.value}
                self._remember(out, dialogue, effect.name, ",".join(sorted(chosen)))
            elif isinstance(effect, Submit):
                values = out.session.values_of(dialogue)
                out.effects.append(Apply(effect, dialogue=dialogue, values=values))
            else:
                out.effects.append(Apply(effect))

    def _remember(self, out: _Out, dialogue: str, name: str, value: str) -> None:
        """Remember `value` under `name`; "" forgets it."""
        values = dict(out.session.values_of(dialogue))
        values[name] = value
        if not value:
            del values[name]
        out.session = out.session.with_values(dialogue, values)

    # --- moving between states ---------------------------------------------------------
    def _enter(self, out: _Out, place: Place) -> None:
        state = self._state(place)
        while True:
            only = self._only_offer(state, out.session.values_of(place.dialogue))
            if state.skip is not None and state.skip[0] in out.session.facts:
                # Already known (e.g. the region, from an enrolment code): do not ask again.
                place = Place(place.dialogue, state.skip[1])
            elif only is not None and only.to is not None:
                # Staff of one area are not asked which: it is theirs.
                self._apply_all(out, place.dialogue, only.effects)
                place = Place(place.dialogue, only.to)
            else:
                break
            state = self._state(place)
        if not state.end:
            out.session = out.session.at(place)
            out.effects.append(self._question(place, out.session))
            return
        if state.say:  # an end state after a Submit may leave the answer to the application
            out.say(state.say)
        out.effects.append(DialogueEnded(place.dialogue))
        if state.declines:
            # Any consent given earlier (a sign-up left half-way and begun again) goes too.
            out.effects.append(Apply(WithdrawAllConsents()))
            session = replace(out.session, facts=out.session.facts | {WITHDREW})
        else:
            session = replace(out.session, completed=out.session.completed | {place.dialogue})
        session = session.with_values(place.dialogue, {})
        if session.resume:
            out.session = replace(session, place=session.resume[-1], resume=session.resume[:-1])
            self._reask(out)
        else:
            out.session = session.at(None)

    def _reask(self, out: _Out, lead: str | None = None, **params: str) -> None:
        place = out.session.place
        if place is None:
            if lead is not None:
                out.say(self.message(lead), **params)
            out.say(self.message("nothing_in_progress"))
            return
        question = self._question(place, out.session)
        if lead is not None:
            question = replace(question, lead=self.message(lead), params=MappingProxyType(params))
        out.effects.append(question)

    def _question(self, place: Place, session: Session) -> Say:
        state = self._state(place)
        fingerprint = values_fingerprint(session.values_of(place.dialogue))
        suffix = f".{fingerprint}" if fingerprint else ""
        buttons = tuple(
            ButtonView(button_token(place.dialogue, state.name, b.id) + suffix, b.label)
            for b in self._offered(state, session.values_of(place.dialogue))
        )
        return Say(state.say, buttons, state.columns, values=session.values_of(place.dialogue))

    def _offered(self, state: State, values: Mapping[str, str]) -> tuple[Button, ...]:
        """The buttons the person is shown: on an `own_regions` state, those of the areas
        the staff member acts for. All of them when the dialogue began without the areas
        (under an older version) or none of them is offered: better a refusal at the end
        than a question with no answer."""
        buttons = state.all_buttons()
        if not state.own_regions:  # asked first: this runs at every step
            return buttons
        acting = set(filter(None, values.get(ACTING_REGIONS, "").split(",")))
        if not acting:
            return buttons
        if not any(region_of(b) in acting for b in buttons):
            return buttons
        return tuple(b for b in buttons if region_of(b) is None or region_of(b) in acting)

    def _only_offer(self, state: State, values: Mapping[str, str]) -> Button | None:
        """The one area button offered, when only one is (a staff member of one area)."""
        if not state.own_regions:
            return None
        regions = [b for b in self._offered(state, values) if region_of(b) is not None]
        return regions[0] if len(regions) == 1 else None

    # --- lookups -------------------------------------------------------------------------
    def _normalise(self, session: Session) -> Session:
        """Drop places that no longer exist (a dialogue edited under a person)."""

        def known(place: Place) -> bool:
            dialogue = self.dialogues.get(place.dialogue)
            return dialogue is not None and place.state in dialogue.states

        if (session.place is None or known(session.place)) and all(map(known, session.resume)):
            return session
        resume = tuple(p for p in session.resume if known(p))
        place = session.place
        if place is not None and not known(place):
            dialogue = self.dialogues.get(place.dialogue)
            place = Place(place.dialogue, dialogue.start) if dialogue and dialogue.start else None
        return replace(session, place=place, resume=resume)

    def _state(self, place: Place) -> State:
        return self.dialogues[place.dialogue].states[place.state]

    def _start_of(self, dialogue_id: str) -> str:
        start = self.dialogues[dialogue_id].start
        assert start is not None  # checked at construction
        return start

    def _command(self, session: Session, name: str) -> Command | None:
        if session.place is not None:
            own = self.dialogues[session.place.dialogue].commands.get(name)
            if own is not None:
                return own
        return self.common.commands.get(name)


def values_fingerprint(values: Mapping[str, str]) -> str:
    """A short digest of a dialogue's remembered values, added to its buttons' data: a
    button is acted on only while the values it was shown with are still the current
    ones. Empty when nothing is remembered (plain dialogues keep their stable tokens)."""
    if not values:
        return ""
    text = "\n".join(f"{k}={v}" for k, v in sorted(values.items()))
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def _build_machine(dialogue: Dialogue) -> Machine:
    """One machine per dialogue: states and button/text triggers generated from the YAML."""
    machine = Machine(
        model=None,
        states=list(dialogue.states),
        initial=dialogue.start,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    for state in dialogue.states.values():
        for button in state.all_buttons():
            # dest None is an internal transition: the person stays on this question.
            machine.add_transition(f"press_{button.id}", state.name, button.to)
        if state.text is not None:
            machine.add_transition("text", state.name, state.text.to)
    return machine

"""The feedback check-in dialogue at engine level: its transcript, and random abuse."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from state_machines.definition import Submit
from state_machines.engine import Engine
from state_machines.events import (
    Apply,
    Begin,
    ButtonPressed,
    CommandSent,
    Event,
    Say,
    TextSent,
    UnsupportedSent,
)
from state_machines.session import Session
from tests.test_engine import Conversation

PRINCIPLES = ("voice", "respect", "neutrality", "trust")
TOKEN = "0123456789abcdef"


def begin(engine: Engine) -> Conversation:
    conversation = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    replies = conversation.send(Begin("feedback", {"checkin": TOKEN}))
    assert "5 short questions" in replies[0]
    return conversation


def submits(engine: Engine, conversation: Conversation, event: Event) -> list[Apply]:
    step = engine.step(conversation.session, event)
    conversation.session = step.session
    says = tuple(e for e in step.effects if isinstance(e, Say))
    if says:
        conversation.last = says
    return [e for e in step.effects if isinstance(e, Apply) and isinstance(e.effect, Submit)]


def test_a_long_answer_typed_on_a_phone_is_kept_not_refused(engine: Engine) -> None:
    """A message can be 4,096 characters; one of 3,000 (typed with care on a phone) is an
    answer, not "too long". Only beyond 3,500 (room for the words around a quote or a
    relayed message within Telegram's limit) is it refused."""
    conversation = begin(engine)
    conversation.tap("Start")
    for _ in PRINCIPLES:
        conversation.tap("Sometimes")
    long_answer = ("The appointments clash with my shifts. " * 80)[:3000]
    step = engine.step(conversation.session, TextSent(long_answer))
    stored = [e for e in step.effects if isinstance(e, Apply) and e.value == long_answer]
    assert stored, "the long answer was not kept"
    assert not any("too long" in (e.lead or "") for e in step.effects if isinstance(e, Say))


def test_the_whole_check_in_with_skip_and_simpler_words(engine: Engine) -> None:
    conversation = begin(engine)
    assert "listen to you" in conversation.tap("Start")[0]
    assert "respect" in conversation.tap("Mostly")[0]
    assert "polite" in conversation.tap("I don't understand")[0]  # simpler words
    assert "fair way" in conversation.tap("Always")[0]
    assert "do what they say" in conversation.tap("Skip this one")[0]
    assert "What one thing" in conversation.tap("Never")[0]
    last = submits(engine, conversation, TextSent("More evening appointments"))
    assert [a.effect for a in last] == [Submit("checkin_completed")]
    assert dict(last[0].values) == {
        "checkin": TOKEN,
        "voice": "4",
        "respect": "5",
        "neutrality": "skip",
        "trust": "1",
    }
    assert conversation.session.place is None and not conversation.session.values


def test_every_answer_is_handed_over_as_it_is_given(engine: Engine) -> None:
    conversation = begin(engine)
    conversation.tap("Start")
    for label in ("Mostly", "Sometimes"):
        message = next(b for s in conversation.last for b in s.buttons if b.label == label)
        (handed,) = submits(engine, conversation, ButtonPressed(message.token))
        assert handed.effect == Submit("checkin_answer")
    assert conversation.session.values_of("feedback")["respect"] == "3"


def test_not_now_ends_kindly(engine: Engine) -> None:
    conversation = begin(engine)
    assert "/feedback at any time" in conversation.tap("Not now")[0]
    assert conversation.session.place is None


actions = st.one_of(
    st.tuples(st.just("tap"), st.integers(0, 10)),
    st.tuples(st.just("stale"), st.integers(0, 10)),
    st.tuples(st.just("text"), st.text(max_size=60)),
    st.tuples(st.just("long"), st.just("x" * 5000)),
    st.tuples(st.just("command"), st.sampled_from(["help", "privacy", "language", "nope"])),
    st.tuples(st.just("sticker"), st.just("sticker")),
    st.tuples(st.just("forged"), st.text(max_size=64)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(actions, max_size=40))
def test_random_abuse_never_crashes_dead_ends_or_stores_a_bad_answer(
    engine: Engine, steps: list[tuple[str, object]]
) -> None:
    conversation = begin(engine)
    seen: list[tuple[str, ...]] = []
    for kind, value in steps:
        buttons = [b.token for s in conversation.last for b in s.buttons]
        if kind == "tap" and buttons:
            event: Event = ButtonPressed(buttons[int(str(value)) % len(buttons)])
        elif kind == "stale" and seen:
            old = seen[int(str(value)) % len(seen)]
            event = ButtonPressed(old[0]) if old else TextSent("")
        elif kind in ("text", "long"):
            event = TextSent(str(value))
        elif kind == "command":
            event = CommandSent(str(value))
        elif kind == "forged":
            event = ButtonPressed(str(value))
        else:
            event = UnsupportedSent("sticker")
        seen.append(tuple(buttons))
        step = engine.step(conversation.session, event)
        conversation.session = step.session
        says = tuple(e for e in step.effects if isinstance(e, Say))
        if says:
            conversation.last = says
        for apply in step.effects:
            if (
                isinstance(apply, Apply)
                and apply.dialogue == "feedback"
                and isinstance(apply.effect, Submit)
            ):
                for principle in PRINCIPLES:
                    assert apply.values.get(principle, "1") in {"1", "2", "3", "4", "5", "skip"}
                assert apply.values.get("checkin") == TOKEN
        place = conversation.session.place
        if place is not None:  # never a dead end: the current question has a way on
            assert engine.current_question(conversation.session) is not None
            state = engine.dialogues[place.dialogue].states[place.state]
            assert state.buttons or state.text is not None

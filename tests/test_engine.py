"""The dialogue engine, by transcript: (what the person does, what the bot says)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from state_machines.definition import GrantConsent, SetLocale, SetRegion, WithdrawAllConsents
from state_machines.engine import WITHDREW, Engine
from state_machines.events import (
    Apply,
    ButtonPressed,
    CommandSent,
    ConfirmChoice,
    DialogueEnded,
    Event,
    Say,
    Started,
    TextSent,
    UnsupportedSent,
)
from state_machines.session import Place, Session


@dataclass
class Conversation:
    """Drives the engine like a person would: by tapping labels and typing."""

    engine: Engine
    session: Session = field(default_factory=Session)
    last: tuple[Say, ...] = ()
    applied: tuple[object, ...] = ()

    def send(self, event: Event) -> list[str]:
        step = self.engine.step(self.session, event)
        self.session = step.session
        says = tuple(e for e in step.effects if isinstance(e, Say))
        if says:
            self.last = says
        self.applied += tuple(e.effect for e in step.effects if isinstance(e, Apply))
        return [(s.lead + " | " if s.lead else "") + s.text for s in says]

    def tap(self, label: str) -> list[str]:
        for say in reversed(self.last):
            for button in say.buttons:
                if button.label == label:
                    return self.send(ButtonPressed(button.token))
        raise AssertionError(f"no button {label!r} in {self.buttons()}")

    def buttons(self) -> list[str]:
        return [b.label for s in self.last for b in s.buttons]


def verify_dialog(engine: Engine, script: list[tuple[str, str]]) -> Conversation:
    """Each pair: an action ('/cmd', 'tap:Label', 'text:...') and a fragment of the reply."""
    conversation = Conversation(engine)
    for action, expected in script:
        if action == "/start":
            replies = conversation.send(Started())
        elif action.startswith("/"):
            replies = conversation.send(CommandSent(action[1:]))
        elif action.startswith("tap:"):
            replies = conversation.tap(action[4:])
        else:
            replies = conversation.send(TextSent(action.removeprefix("text:")))
        assert any(expected in reply for reply in replies), (action, expected, replies)
    return conversation


START = [("/start", "Which language"), ("tap:English", "This is YouSaid")]


def test_onboarding_transcript(engine: Engine) -> None:
    conversation = verify_dialog(
        engine,
        [
            *START,
            ("tap:OK, go on", "Can we keep your answers"),
            ("tap:Yes", "Can we invite you to panels"),
            ("tap:No", "Can we tell you what changed"),
            ("tap:Yes", "Can we use your words"),
            ("tap:No", "Which area"),
            ("tap:Wales", "You are signed up"),
        ],
    )
    assert conversation.applied == (
        SetLocale("en"),
        GrantConsent("feedback", True),
        GrantConsent("panel_invitations", False),
        GrantConsent("updates", True),
        GrantConsent("quotes", False),
        SetRegion("wales"),
    )
    assert conversation.session.place is None
    assert "onboarding" in conversation.session.completed


def test_every_region_is_a_button(engine: Engine) -> None:
    conversation = verify_dialog(
        engine, [*START, ("tap:OK, go on", "keep")] + [("tap:Yes", "?")] * 4
    )
    regions = [
        b for b in conversation.buttons() if b not in ("I don't understand", "I'd rather not say")
    ]
    assert len(regions) == 12 and "I'd rather not say" in conversation.buttons()


def test_i_dont_understand_explains_and_stays(engine: Engine) -> None:
    conversation = verify_dialog(
        engine,
        [
            *START,
            ("tap:OK, go on", "Can we keep your answers"),
            # The explanation, then the question again (with its buttons): not a
            # statement left above the buttons.
            ("tap:I don't understand", "We do not save your name. | Can we keep your answers"),
            ("tap:Yes", "Can we invite you"),
        ],
    )
    assert conversation.applied == (SetLocale("en"), GrantConsent("feedback", True))


def test_text_where_a_button_is_expected_reasks(engine: Engine) -> None:
    conversation = verify_dialog(
        engine,
        [
            *START,
            ("text:yes please", "Please tap one of the buttons. | This is YouSaid"),
        ],
    )
    assert conversation.session.place == Place("onboarding", "notice")


def test_old_button_is_answered_kindly(engine: Engine) -> None:
    conversation = verify_dialog(engine, [*START, ("tap:OK, go on", "keep")])
    old_token = engine.step(Session(), Started()).effects[0]
    assert isinstance(old_token, Say)
    replies = conversation.send(ButtonPressed(old_token.buttons[0].token))
    assert replies[0].startswith("That button is from an older message")
    assert conversation.session.place == Place("onboarding", "consent_feedback")


def test_forged_button_changes_nothing(engine: Engine) -> None:
    conversation = verify_dialog(engine, [*START])
    before, applied = conversation.session, conversation.applied
    conversation.send(ButtonPressed("b0000000000000000"))
    assert conversation.session == before
    assert conversation.applied == applied


def test_start_again_mid_dialogue_keeps_place(engine: Engine) -> None:
    conversation = verify_dialog(
        engine,
        [
            *START,
            ("tap:OK, go on", "keep"),
            ("/start", "Here is where you were. | Can we keep your answers"),
        ],
    )
    assert conversation.session.place == Place("onboarding", "consent_feedback")


def test_start_with_unknown_code_says_so_and_goes_on(engine: Engine) -> None:
    step = engine.step(Session(), Started(payload="ABC123", payload_accepted=False))
    texts = [e.text for e in step.effects if isinstance(e, Say)]
    assert "cannot use" in texts[0] and "Which language" in texts[1]


def test_privacy_waits_for_sign_up(engine: Engine) -> None:
    """A consent is recorded against the notice the person read: /privacy before signing
    up sends them to /start (or back to the question they were on)."""
    conversation = verify_dialog(
        engine,
        [
            ("/privacy", "Please sign up first"),
            *START,
            ("tap:OK, go on", "keep"),
            ("/privacy", "Please sign up first"),
        ],
    )
    assert conversation.applied == (SetLocale("en"),)
    assert conversation.session.place == Place("onboarding", "consent_feedback")
    assert "Can we keep your answers" in conversation.last[-1].text


def test_privacy_is_a_sub_dialogue_that_returns(engine: Engine) -> None:
    conversation = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    assert "Which area" in conversation.send(CommandSent("area"))[-1]
    assert "{consent_summary}" in conversation.send(CommandSent("privacy"))[-1]
    assert "Can we use your words" in conversation.tap("Use my words")[-1]
    assert "{consent_summary}" in conversation.tap("No")[-1]
    assert "Which area" in conversation.tap("That is all")[-1]
    assert conversation.applied == (GrantConsent("quotes", False),)
    assert conversation.session.place is not None
    assert conversation.session.place.dialogue == "area"


def test_stop_withdraws_everything_and_ends(engine: Engine) -> None:
    conversation = verify_dialog(
        engine,
        [
            *START,
            ("tap:OK, go on", "keep"),
            ("tap:Yes", "panels"),
            ("/stop", "no more messages"),
        ],
    )
    assert conversation.applied[-1] == WithdrawAllConsents()
    assert conversation.session == Session(facts=frozenset({WITHDREW}))
    # Writing afterwards ("stop messaging me") does not sign them up again; /start does.
    stopped = conversation.send(TextSent("stop messaging me"))[0]
    assert "You said no to taking part" in stopped and "/stop" not in stopped
    assert "Which language" in conversation.send(Started())[0]
    assert WITHDREW not in conversation.session.facts


def test_finished_person_is_welcomed_back(engine: Engine) -> None:
    session = Session(completed=frozenset({"onboarding"}))
    step = engine.step(session, Started())
    assert next(e.text for e in step.effects if isinstance(e, Say)).startswith("Welcome back")


def test_writing_without_start_begins_for_someone_new_but_not_once_signed_up(
    engine: Engine,
) -> None:
    """After /delete the bot says a message starts again from the beginning; a person
    who never sent /start is met the same way. Once signed up, text with nothing being
    asked is answered as such."""
    step = engine.step(Session(), TextSent("hello"))
    assert step.session.place == Place(engine.entry, "language")
    assert "Which language" in next(e.text for e in step.effects if isinstance(e, Say))
    assert not [e for e in step.effects if isinstance(e, Apply)]  # nothing kept of the text
    signed_up = Session(completed=frozenset({engine.entry}))
    step = engine.step(signed_up, TextSent("hello"))
    assert step.session.place is None
    assert "nothing to answer" in next(e.text for e in step.effects if isinstance(e, Say))


def test_unknown_command_and_unsupported_content(engine: Engine) -> None:
    verify_dialog(engine, [*START, ("/dance", "I do not know that command")])
    step = engine.step(Session(place=Place("onboarding", "notice")), UnsupportedSent("sticker"))
    say = step.effects[0]
    assert isinstance(say, Say) and say.lead and "only read text" in say.lead and say.buttons


def test_a_place_that_no_longer_exists_restarts_that_dialogue(engine: Engine) -> None:
    step = engine.step(Session(place=Place("onboarding", "renamed_state")), TextSent("hi"))
    assert step.session.place == Place("onboarding", "language")
    assert "we changed this chat" in step.effects[0].text  # type: ignore[union-attr]


def _all_tokens(engine: Engine) -> list[str]:
    from state_machines.definition import button_token

    return [
        button_token(d.id, s.name, b.id)
        for d in engine.dialogues.values()
        for s in d.states.values()
        for b in s.all_buttons()
    ]


@st.composite
def events(draw: st.DrawFn, tokens: list[str]) -> Event:
    kind = draw(st.sampled_from(["start", "button", "text", "command", "media"]))
    if kind == "start":
        return Started(draw(st.none() | st.text(max_size=64)), draw(st.booleans()))
    if kind == "button":
        return ButtonPressed(draw(st.sampled_from(tokens) | st.text(max_size=64)))
    if kind == "text":
        return TextSent(draw(st.text(max_size=600)))
    if kind == "command":
        return CommandSent(draw(st.sampled_from(["help", "privacy", "stop", "language", "x"])))
    return UnsupportedSent(draw(st.sampled_from(["sticker", "photo", "voice"])))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_event_sequences_never_crash_or_strand(engine: Engine, data: st.DataObject) -> None:
    tokens = _all_tokens(engine)
    session = Session()
    for _ in range(data.draw(st.integers(1, 30))):
        step = engine.step(session, data.draw(events(tokens)))
        session = Session.from_json(step.session.to_json())
        assert session == step.session
        says = [e for e in step.effects if isinstance(e, Say)]
        assert says, "every event gets an answer"
        if session.place is not None:
            # the person always has a question in front of them with a way to answer it
            state = engine.dialogues[session.place.dialogue].states[session.place.state]
            assert state.buttons or state.text
        ended = [e for e in step.effects if isinstance(e, DialogueEnded)]
        assert len(ended) <= 1
        assert all(isinstance(e, Say | Apply | ConfirmChoice | DialogueEnded) for e in step.effects)


def test_cancel_ends_the_questions_but_keeps_what_the_session_knew(engine: Engine) -> None:
    """/cancel leaves the dialogue; the area an enrolment code gave (a fact) stays, so
    signing up again does not ask for it."""
    session = Session(
        place=Place("onboarding", "consent_feedback"), facts=frozenset({"region_known"})
    )
    step = engine.step(session, CommandSent("cancel"))
    assert step.session.place is None and step.session.facts == {"region_known"}
    stopped = engine.step(session, CommandSent("stop"))
    assert stopped.session.facts == {WITHDREW}


def test_no_thanks_at_the_notice_ends_without_signing_up(engine: Engine) -> None:
    """Not taking part is as plain as taking part: nothing is asked or recorded, writing
    later does not start the questions again, and /start does."""
    conversation = verify_dialog(
        engine,
        [
            *START,
            ("tap:No, thanks", "We will not ask you anything"),
            ("text:ok", "said no to taking part"),
        ],
    )
    # any consent given before (a sign-up left and begun again) is taken back
    assert conversation.applied == (SetLocale("en"), WithdrawAllConsents())
    assert "onboarding" not in conversation.session.completed
    assert conversation.session.place is None
    assert "Which language" in conversation.send(Started())[-1]


def test_help_lists_the_staff_commands_to_staff_only(engine: Engine) -> None:
    """/help is for people on licence; staff (any role) are also told their own commands,
    which they had no way to find."""
    said = [
        e.text for e in engine.step(Session(), CommandSent("help")).effects if isinstance(e, Say)
    ]
    staff = CommandSent("help", roles=frozenset({"manager"}))
    to_staff = [e.text for e in engine.step(Session(), staff).effects if isinstance(e, Say)]
    assert not any("/panel_new" in text for text in said)
    assert any("/panel_new" in text and "/digest" in text for text in to_staff)
    assert to_staff[0] == said[0]  # the same help first

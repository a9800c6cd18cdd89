"""Dialogues that remember values (forms): typed answers, toggles, Submit, roles, Begin."""

from __future__ import annotations

import pytest

from bot.dialogue_files import load_dialogues
from state_machines.definition import REGION_SLUGS, Submit, button_token
from state_machines.engine import Engine, EngineError
from state_machines.events import (
    Abandon,
    Apply,
    Begin,
    ButtonPressed,
    CommandSent,
    Say,
    TextSent,
)
from state_machines.loader import DialogueError, parse_dialogue
from state_machines.session import Session
from tests.conftest import DIALOGUES_DIR
from tests.test_engine import Conversation

FORM = """
schema_version: 1
id: form
start: title
states:
  title:
    say: What is it called?
    text: {max_length: 20, save_as: title, to: seats}
  seats:
    say: How many seats?
    text: {max_length: 6, kind: number, save_as: seats, to: help}
  help:
    say: "Help offered: {help}"
    buttons:
      - {id: travel, label: Travel, effects: [{toggle: {name: help, value: travel}}]}
      - {id: care, label: Childcare, effects: [{toggle: {name: help, value: childcare}}]}
      - {id: done, label: Done, to: preview}
  preview:
    say: "{title}, {seats} seats. Send it?"
    buttons:
      - {id: send, label: Send, to: sent, effects: [{submit: make_it}]}
      - {id: online, label: Online, to: preview, effects: [{set: {name: place, value: online}}]}
      - {id: stop, label: Stop, to: stopped}
  sent:
    end: true
  stopped:
    say: Nothing was sent.
    end: true
"""

# Commands that work everywhere live in the common file: add one that needs a role.
STAFF_COMMAND = "commands:\n  form:\n    start: form\n    requires: staff\n"
COMMON = (DIALOGUES_DIR / "common.yaml").read_text("utf-8").replace("commands:\n", STAFF_COMMAND)


@pytest.fixture()
def engine() -> Engine:
    return Engine(
        {
            **load_dialogues(DIALOGUES_DIR),
            "form": parse_dialogue(FORM, "form.yaml"),
            "common": parse_dialogue(COMMON, "common.yaml"),
        },
        parsers={"datetime": lambda text: None},
    )


def staff_conversation(engine: Engine) -> Conversation:
    conversation = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    conversation.send(Begin("form"))
    return conversation


def test_a_form_remembers_typed_values_and_submits_them(engine: Engine) -> None:
    conversation = staff_conversation(engine)
    assert conversation.send(TextSent("  Spring panel ")) == ["How many seats?"]
    assert conversation.send(TextSent("twelve"))[0].endswith("How many seats?")
    conversation.send(TextSent("1,200"))
    conversation.tap("Travel")
    conversation.tap("Childcare")
    conversation.tap("Travel")
    assert conversation.last[-1].values["help"] == "childcare"
    conversation.tap("Done")
    preview = conversation.last[-1]
    assert preview.values == {"title": "Spring panel", "seats": "1200", "help": "childcare"}
    step = engine.step(conversation.session, conversation_button(conversation, "Send"))
    (apply,) = [e for e in step.effects if isinstance(e, Apply)]
    assert apply.effect == Submit("make_it")
    assert dict(apply.values) == {"title": "Spring panel", "seats": "1200", "help": "childcare"}
    assert not [e for e in step.effects if isinstance(e, Say)]  # the application answers
    assert step.session.place is None and not step.session.values  # forgotten at the end


def conversation_button(conversation: Conversation, label: str) -> object:
    from state_machines.events import ButtonPressed

    for say in reversed(conversation.last):
        for button in say.buttons:
            if button.label == label:
                return ButtonPressed(button.token)
    raise AssertionError(label)


def test_a_bad_number_is_asked_again_with_a_reason(engine: Engine) -> None:
    conversation = staff_conversation(engine)
    conversation.send(TextSent("Panel"))
    for bad in ("0", "-3", "many", "100001"):
        step = engine.step(conversation.session, TextSent(bad))
        (say,) = [e for e in step.effects if isinstance(e, Say)]
        assert say.lead == engine.message("invalid_number") and say.text == "How many seats?"


def test_a_role_command_is_not_available_without_the_role(engine: Engine) -> None:
    participant = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    assert participant.send(CommandSent("form")) == [engine.message("not_available")]
    assert participant.session.place is None
    staff = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    assert staff.send(CommandSent("form", roles=frozenset({"staff"}))) == ["What is it called?"]


def test_values_survive_a_sub_dialogue_and_a_restart_of_the_process(engine: Engine) -> None:
    conversation = staff_conversation(engine)
    conversation.send(TextSent("Panel"))
    stored = conversation.session.to_json()
    assert Session.from_json(stored) == conversation.session
    assert Session.from_json(stored).values_of("form") == {"title": "Panel"}


def test_begin_starts_afresh_with_preset_values(engine: Engine) -> None:
    conversation = staff_conversation(engine)
    conversation.send(TextSent("First"))
    conversation.send(Begin("form", {"title": "Preset"}))
    assert conversation.session.values_of("form") == {"title": "Preset"}
    assert conversation.session.resume == ()  # not stacked on itself
    (say,) = engine.step(conversation.session, Begin("no_such")).effects
    assert isinstance(say, Say) and say.lead == engine.message("old_button")


def test_a_kind_without_a_parser_stops_start_up() -> None:
    broken = FORM.replace("kind: number", "kind: datetime")
    dialogues = {**load_dialogues(DIALOGUES_DIR), "form": parse_dialogue(broken, "form.yaml")}
    with pytest.raises(EngineError, match="no parser for answers of kind 'datetime'"):
        Engine(dialogues)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("kind: number", "kind: colour"),
        ("{submit: make_it}", "{submit: Make It}"),
        ("{toggle: {name: help, value: travel}}", "{toggle: {name: help}}"),
    ],
)
def test_bad_form_definitions_name_the_line(change: str, problem: str) -> None:
    with pytest.raises(DialogueError) as error:
        parse_dialogue(FORM.replace(change, problem), "form.yaml")
    assert "form.yaml:" in str(error.value)


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(DialogueError, match="requires must be one of"):
        parse_dialogue(COMMON.replace("requires: staff", "requires: boss"), "c.yaml")


def test_abandon_leaves_a_dialogue_silently_and_returns_to_where_the_person_was(
    engine: Engine,
) -> None:
    conversation = staff_conversation(engine)
    conversation.send(TextSent("Panel"))
    step = engine.step(conversation.session, Abandon("form"))
    assert step.effects == ()
    assert step.session.place is None and not step.session.values
    untouched = engine.step(step.session, Abandon("form"))
    assert untouched.session == step.session


def test_a_button_shown_for_other_values_is_an_old_button(engine: Engine) -> None:
    """The same question asked twice for different things (e.g. two panels): only the
    buttons under the current one act."""
    conversation = staff_conversation(engine)
    for title in ("Housing", "Jobs"):
        conversation.send(Begin("form"))
        conversation.send(TextSent(title))
        conversation.send(TextSent("5"))
        if title == "Housing":
            housing_question = conversation.last
    jobs_question = conversation.last
    conversation.last = housing_question
    step = engine.step(conversation.session, conversation_button(conversation, "Travel"))
    (say,) = [e for e in step.effects if isinstance(e, Say)]
    assert say.lead == engine.message("old_button")
    assert step.session == conversation.session
    conversation.last = jobs_question
    conversation.tap("Travel")
    assert conversation.session.values_of("form")["help"] == "travel"


def test_beginning_a_dialogue_again_drops_its_unfinished_run_from_the_resume_stack(
    engine: Engine,
) -> None:
    conversation = staff_conversation(engine)
    conversation.send(TextSent("Panel"))
    conversation.send(CommandSent("language"))
    conversation.send(Begin("form"))
    assert all(p.dialogue != "form" for p in conversation.session.resume)


def test_skip_after_start_again_forgets_the_welsh_typed_before(engine: Engine) -> None:
    """/yousaid promises that Skip sends the English with a note: a Welsh text typed on
    the first go, before "Start again", must not be sent instead."""
    conversation = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    conversation.send(Begin("yousaid"))
    for label in ("Housing", "Done", "Yes, go on", "We changed this"):
        conversation.tap(label)
    conversation.send(TextSent("The housing team comes every Tuesday."))
    conversation.tap("London")
    conversation.send(TextSent("Mae'r tîm tai yn dod bob dydd Mawrth."))
    assert conversation.last[-1].values["text_cy"].startswith("Mae'r")
    conversation.tap("Start again")
    for label in ("Done", "Yes, go on", "We changed this"):
        conversation.tap(label)
    conversation.send(TextSent("The housing team now comes every Wednesday."))
    conversation.tap("London")
    conversation.tap("Skip")
    preview = conversation.last[-1]
    assert "text_cy" not in preview.values
    assert preview.values["text_en"] == "The housing team now comes every Wednesday."


def yousaid_by(engine: Engine, regions: frozenset[str]) -> Conversation:
    """A staff member acting for `regions` opens /yousaid and gets to the area question."""
    conversation = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    conversation.send(CommandSent("yousaid", roles=frozenset({"staff"}), regions=regions))
    for label in ("Housing", "Done", "Yes, go on", "We changed this"):
        conversation.tap(label)
    conversation.send(TextSent("The housing team comes every Tuesday."))
    return conversation


def test_staff_are_offered_only_the_areas_they_act_for(engine: Engine) -> None:
    """All 12 areas were offered, and a wrong one refused only at "Send": the form lost."""
    conversation = yousaid_by(engine, frozenset({"wales", "london"}))
    assert conversation.last[-1].text == "Which area is it for?"
    assert conversation.buttons() == ["Wales", "London"]
    conversation.tap("Wales")
    assert conversation.session.values_of("yousaid")["region"] == "wales"
    admin = yousaid_by(engine, frozenset(REGION_SLUGS))
    assert len(admin.buttons()) == len(REGION_SLUGS)


def test_staff_of_one_area_are_not_asked_which(engine: Engine) -> None:
    conversation = yousaid_by(engine, frozenset({"london"}))
    assert conversation.last[-1].text.startswith("Now write it in Welsh, or tap Skip")
    assert conversation.session.values_of("yousaid")["region"] == "london"
    conversation.tap("Skip")
    conversation.tap("Start again")  # and not asked on the second go either
    for label in ("Housing", "Done", "Yes, go on", "We changed this"):
        conversation.tap(label)
    conversation.send(TextSent("The housing team now comes every Wednesday."))
    assert conversation.last[-1].text.startswith("Now write it in Welsh, or tap Skip")


def test_staff_of_wales_are_asked_the_welsh_with_no_skip(engine: Engine) -> None:
    """Welsh is a must for an update for Wales: the area comes before the Welsh question,
    so Wales's is asked with no Skip (it was refused at Send, the form lost)."""
    conversation = yousaid_by(engine, frozenset({"wales"}))
    assert "must be in Welsh too" in conversation.last[-1].text
    assert conversation.buttons() == []
    conversation.send(TextSent("Mae'r tîm tai yn dod bob dydd Mawrth."))
    assert conversation.last[-1].values["text_cy"].startswith("Mae'r")


def test_another_areas_button_is_not_acted_on(engine: Engine) -> None:
    """Button tokens are hashes of public names, so one for any area can be made."""
    conversation = yousaid_by(engine, frozenset({"wales", "london"}))
    forged = ButtonPressed(
        button_token("yousaid", "region", "north_east")
        + conversation.last[-1].buttons[0].token[17:]
    )
    step = engine.step(conversation.session, forged)
    (say,) = [e for e in step.effects if isinstance(e, Say)]
    assert say.lead == engine.message("old_button") and "region" not in step.session.values_of(
        "yousaid"
    )


def test_a_form_begun_without_the_areas_offers_them_all(engine: Engine) -> None:
    """A session begun before areas were remembered (or by Begin) is not left without an
    answer: the application still refuses a wrong area at the end."""
    conversation = Conversation(engine, Session(completed=frozenset({"onboarding"})))
    conversation.send(Begin("yousaid"))
    for label in ("Housing", "Done", "Yes, go on", "We changed this"):
        conversation.tap(label)
    conversation.send(TextSent("The housing team comes every Tuesday."))
    assert len(conversation.buttons()) == len(REGION_SLUGS)


def test_own_regions_needs_buttons_that_set_a_region() -> None:
    broken = FORM.replace(
        '    say: "Help offered: {help}"\n', '    say: "Help: {help}"\n    own_regions: true\n'
    )
    with pytest.raises(DialogueError, match="must set a region"):
        parse_dialogue(broken, "form.yaml")

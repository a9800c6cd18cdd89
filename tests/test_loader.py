"""The dialogue loader: every problem reported as `file:line: state: problem`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.settings import PROJECT_ROOT
from state_machines.loader import DialogueError, parse_dialogue
from state_machines.migrations import MIGRATIONS, migrate_document

MINIMAL = """\
schema_version: 1
id: tiny
start: ask
states:
  ask:
    say: Is it raining?
    buttons:
      - {id: "yes", label: "Yes", to: done}
  done:
    say: Thanks.
    end: true
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(DialogueError) as caught:
        parse_dialogue(text, "tiny.yaml")
    return [str(p) for p in caught.value.problems]


def test_minimal_dialogue_loads() -> None:
    dialogue = parse_dialogue(MINIMAL, "tiny.yaml")
    assert dialogue.start == "ask" and dialogue.states["done"].end


def test_unknown_key_names_file_line_and_state() -> None:
    text = MINIMAL.replace("    say: Is it raining?", "    say: Is it raining?\n    colour: blue")
    assert problems_of(text) == [
        "tiny.yaml:7: ask: unknown key 'colour' (expected one of: buttons, columns, declines, "
        "end, explain, own_regions, say, skip, text)"
    ]


def test_dangling_target_and_unreachable_state() -> None:
    text = MINIMAL.replace("to: done", "to: nowhere")
    found = problems_of(text)
    assert "tiny.yaml:5: ask: goes to 'nowhere', which does not exist" in found
    assert "tiny.yaml:9: done: unreachable from start state 'ask'" in found


def test_all_problems_are_reported_at_once() -> None:
    text = MINIMAL.replace("id: tiny", "id: Tiny!").replace("end: true", "end: maybe")
    found = problems_of(text)
    assert any("'Tiny!' is not a valid name" in p for p in found)
    assert any("expected true or false" in p for p in found)


def test_bad_effects_are_rejected() -> None:
    text = MINIMAL.replace(
        "to: done}",
        "to: done, effects: [{consent: {purpose: spying, granted: true}}, {set_region: atlantis}]}",
    )
    found = problems_of(text)
    assert any("consent purpose must be one of" in p for p in found)
    assert any("unknown region 'atlantis'" in p for p in found)


def test_a_state_with_no_way_forward_is_rejected() -> None:
    text = MINIMAL.replace("to: done}", "to: ask}")
    found = problems_of(text)
    assert any("no path leads from here to an end state" in p for p in found)


def test_newer_schema_version_asks_for_an_upgrade() -> None:
    found = problems_of(MINIMAL.replace("schema_version: 1", "schema_version: 7"))
    assert any("newer than this code understands" in p for p in found)


def test_format_migrations_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """A version-0 document is upgraded by the registered pure function."""

    def rename_prompt_to_say(root: yaml.MappingNode) -> yaml.MappingNode:
        for _, states in root.value:
            if isinstance(states, yaml.MappingNode):
                for _, state in states.value:
                    for key, _ in getattr(state, "value", []):
                        if getattr(key, "value", None) == "prompt":
                            key.value = "say"
        return root

    monkeypatch.setitem(MIGRATIONS, 0, rename_prompt_to_say)
    old = MINIMAL.replace("schema_version: 1", "schema_version: 0").replace("say:", "prompt:")
    dialogue = parse_dialogue(old, "tiny.yaml")
    assert dialogue.schema_version == 1 and dialogue.states["ask"].say == "Is it raining?"
    root = yaml.compose(old)
    problems: list[str] = []
    monkeypatch.delitem(MIGRATIONS, 0)
    migrate_document(root, lambda node, where, message: problems.append(message))
    assert problems == ["no migration from schema_version 0"]


def run_check(dialogues: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", "check", "--dialogues", str(dialogues)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_passes_on_the_shipped_dialogues() -> None:
    result = run_check(PROJECT_ROOT / "dialogues")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")


def test_check_reports_an_unknown_key_with_its_line_and_exits_2(dialogues_copy: Path) -> None:
    path = dialogues_copy / "onboarding.yaml"
    lines = path.read_text("utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip() == "consent_quotes:")
    lines.insert(index + 1, "    colour: blue")
    path.write_text("\n".join(lines) + "\n", "utf-8")
    result = run_check(dialogues_copy)
    assert result.returncode == 2
    assert f"onboarding.yaml:{index + 2}: consent_quotes: unknown key 'colour'" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_reports_a_broken_stop_words_file_and_exits_2(dialogues_copy: Path) -> None:
    (dialogues_copy / "stop_words.yaml").write_text("id: stop_words\nwords: {en: stop}\n")
    result = run_check(dialogues_copy)
    assert result.returncode == 2
    assert "stop_words.yaml: words of 'en' must be a list" in result.stdout
    assert "Traceback" not in result.stderr


def check_with_welsh_edited(tmp_path: Path, old: str, new: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot check` on a copy of the catalogs with one Welsh line changed."""
    locales = tmp_path / "locales"
    for locale in ("en", "cy"):
        target = locales / locale / "LC_MESSAGES"
        target.mkdir(parents=True)
        source = PROJECT_ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po"
        target.joinpath("messages.po").write_text(source.read_text("utf-8"), "utf-8")
    welsh = locales / "cy" / "LC_MESSAGES" / "messages.po"
    text = welsh.read_text("utf-8")
    assert text.count(old) == 1
    welsh.write_text(text.replace(old, new), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    env["LOCALES_DIR"] = str(locales)
    return subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_names_a_missing_welsh_translation_and_exits_2(tmp_path: Path) -> None:
    result = check_with_welsh_edited(tmp_path, 'msgstr "Dw i ddim yn deall"', 'msgstr ""')
    assert result.returncode == 2
    assert 'no Welsh translation for "I don\'t understand"' in result.stdout


def test_check_catches_a_translation_whose_placeholders_differ(tmp_path: Path) -> None:
    result = check_with_welsh_edited(
        tmp_path, 'msgstr "Eich dewis: {choice}"', 'msgstr "Eich dewis: {dewis}"'
    )
    assert result.returncode == 2
    assert "placeholders ['dewis'] differ from the source ['choice']" in result.stdout


# The dialogues people on licence go through (staff ones are not held to this). The brief:
# "I don't understand" always possible. A language choice is shown in both languages.
PEOPLE_S_DIALOGUES = ("onboarding", "feedback", "privacy", "my_data", "area")
EXPLAINED_BY_BOTH_LANGUAGES = {("onboarding", "language")}


def test_every_question_people_answer_with_buttons_can_be_explained() -> None:
    missing = []
    for name in PEOPLE_S_DIALOGUES:
        path = PROJECT_ROOT / "dialogues" / f"{name}.yaml"
        dialogue = parse_dialogue(path.read_text("utf-8"), path.name)
        for state_name, state in dialogue.states.items():
            if (name, state_name) in EXPLAINED_BY_BOTH_LANGUAGES:
                continue
            if state.buttons and not state.explain:
                missing.append(f"{name}.{state_name}")
    assert missing == [], "add an explain: to each"

"""Parse and validate a YAML dialogue document into a frozen `Dialogue`.

Every problem is reported as `file:line: state: problem`, and all problems are collected
before failing, so one `python -m bot check` run shows everything wrong with a file.
The caller reads the file; this module only parses text (the engine layer does no I/O).
"""

from __future__ import annotations

import re
import string
from collections import deque
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml

from state_machines.definition import (
    CONSENT_PURPOSES,
    EXPLAIN_BUTTON_ID,
    INPUT_KINDS,
    LANGUAGES,
    REGION_SLUGS,
    ROLES,
    Button,
    Command,
    Dialogue,
    EffectSpec,
    GrantConsent,
    SetLocale,
    SetRegion,
    SetValue,
    State,
    StoreAnswer,
    Submit,
    TextInput,
    ToggleValue,
    WithdrawAllConsents,
    region_of,
)
from state_machines.migrations import CURRENT_SCHEMA_VERSION, migrate_document

# libyaml's parser when PyYAML was built with it: ~20x faster, a third of the start-up time
# otherwise (bench/RESULTS.md, start-up). Same nodes and marks as the pure-Python one.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# A value a button sets: a name or a slug such as a region ("north-east").
_VALUE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")
_TOP_KEYS = {"schema_version", "id", "start", "states", "commands", "messages", "settings"}
_STATE_KEYS = {
    "say",
    "buttons",
    "columns",
    "explain",
    "text",
    "end",
    "skip",
    "declines",
    "own_regions",
}
_BUTTON_KEYS = {"id", "label", "to", "effects"}
_TEXT_KEYS = {"max_length", "to", "store", "kind", "save_as", "effects"}
_COMMAND_KEYS = {"say", "start", "effects", "end_all", "requires", "signed_up", "staff_say"}
# `set_region: none`: the person's area is forgotten (they would rather not say).
NO_REGION = "none"
_EFFECT_KINDS = ("consent", "set_region", "set_locale", "store", "set", "toggle", "submit")
# Telegram caps a message at 4,096 characters; leave room for placeholders.
_MAX_TEXT = 3500
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dialogue file."""

    source: str
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.where}: {self.message}"


class DialogueError(Exception):
    """A dialogue file is invalid; `problems` lists everything found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class _Checker:
    """Walks the composed YAML node tree, keeping line numbers for every error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def problem(self, node: yaml.Node | None, where: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(Problem(self.source, line, where, message))

    def mapping(self, node: yaml.Node, where: str, allowed: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, where, "expected a mapping")
            return {}
        result: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, where, "keys must be plain words")
                continue
            if key in result:
                self.problem(key_node, where, f"duplicate key '{key}'")
            elif allowed and key not in allowed:
                known = ", ".join(sorted(allowed))
                self.problem(key_node, where, f"unknown key '{key}' (expected one of: {known})")
            result[key] = value_node
        return result

    def text(self, node: yaml.Node, where: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.problem(node, where, "expected text")
            return ""
        value = str(node.value).strip()
        if not value:
            self.problem(node, where, "text must not be empty")
        elif len(value) > _MAX_TEXT:
            self.problem(node, where, f"text longer than {_MAX_TEXT} characters")
        try:
            list(string.Formatter().parse(value))
        except ValueError as exc:
            self.problem(node, where, f"bad placeholder: {exc}")
        return value

    def scalar(self, node: yaml.Node, where: str, kind: type) -> Any:
        value = _CONSTRUCTOR.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.problem(node, where, "expected a whole number")
            return None
        if kind is bool and not isinstance(value, bool):
            self.problem(node, where, "expected true or false")
            return None
        if kind is str and not isinstance(value, str):
            self.problem(node, where, "expected a word")
            return None
        return value

    def name(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where, str)
        if value is not None and not _NAME.match(value):
            self.problem(node, where, f"'{value}' is not a valid name (a-z, 0-9, _)")
        return str(value or "")

    def effects(self, node: yaml.Node, where: str) -> tuple[EffectSpec, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, where, "effects must be a list")
            return ()
        return tuple(e for item in node.value if (e := self.effect(item, where)) is not None)

    def effect(self, node: yaml.Node, where: str) -> EffectSpec | None:
        if isinstance(node, yaml.ScalarNode) and node.value == "withdraw_all_consents":
            return WithdrawAllConsents()
        fields = self.mapping(node, where, set(_EFFECT_KINDS))
        if len(fields) != 1:
            self.problem(
                node,
                where,
                f"each effect is one of: {', '.join(_EFFECT_KINDS)}, withdraw_all_consents",
            )
            return None
        ((kind, value),) = fields.items()
        if kind in ("set", "toggle"):
            parts = self.mapping(value, where, {"name", "value"})
            if "name" not in parts or "value" not in parts:
                self.problem(value, where, f"{kind} needs name and value")
                return None
            name, chosen = self.name(parts["name"], where), self.scalar(parts["value"], where, str)
            # set to "": forget the value (e.g. a Welsh text typed before "Start again").
            forgets = kind == "set" and chosen == ""
            if chosen is None or not (forgets or _VALUE.match(chosen)):
                self.problem(parts["value"], where, f"'{chosen}' is not a valid value")
                return None
            return SetValue(name, chosen) if kind == "set" else ToggleValue(name, chosen)
        if kind == "submit":
            return Submit(self.name(value, where))
        if kind == "consent":
            parts = self.mapping(value, where, {"purpose", "granted"})
            purpose = self.scalar(parts["purpose"], where, str) if "purpose" in parts else None
            granted = self.scalar(parts["granted"], where, bool) if "granted" in parts else None
            if purpose not in CONSENT_PURPOSES:
                self.problem(value, where, f"consent purpose must be one of {CONSENT_PURPOSES}")
                return None
            if granted is None:
                self.problem(value, where, "consent needs granted: true or false")
                return None
            return GrantConsent(purpose, granted)
        if kind == "set_region":
            region = self.scalar(value, where, str)
            if region == NO_REGION:
                return SetRegion("")
            if region not in REGION_SLUGS:
                self.problem(value, where, f"unknown region '{region}'")
                return None
            return SetRegion(region)
        if kind == "set_locale":
            locale = self.scalar(value, where, str)
            if locale not in LANGUAGES:
                self.problem(value, where, f"set_locale must be one of {LANGUAGES}")
                return None
            return SetLocale(locale)
        return StoreAnswer(self.name(value, where))


def parse_dialogue(text: str, source: str) -> Dialogue:
    """Parse one dialogue document; raise `DialogueError` listing every problem found."""
    checker = _Checker(source)
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise DialogueError([Problem(source, line, "(file)", f"not valid YAML: {exc}")]) from exc
    if root is None:
        raise DialogueError([Problem(source, 1, "(file)", "the file is empty")])
    root = migrate_document(root, checker.problem)
    top = checker.mapping(root, "(file)", _TOP_KEYS)
    version = None
    if "schema_version" not in top:
        checker.problem(root, "(file)", "missing schema_version")
    else:
        version = checker.scalar(top["schema_version"], "(file)", int)
    if version is not None and version != CURRENT_SCHEMA_VERSION:
        checker.problem(
            top["schema_version"],
            "(file)",
            f"schema_version must be {CURRENT_SCHEMA_VERSION} after migration, not {version}",
        )
    dialogue_id = checker.name(top["id"], "(file)") if "id" in top else ""
    if "id" not in top:
        checker.problem(root, "(file)", "missing id")

    states = _states(checker, top.get("states"))
    commands = _commands(checker, top.get("commands"))
    messages = _text_map(checker, top.get("messages"), "messages")
    settings = _text_map(checker, top.get("settings"), "settings")
    start = None
    if "start" in top:
        start = checker.name(top["start"], "(file)")
        if states and start not in states:
            checker.problem(top["start"], "(file)", f"start state '{start}' does not exist")
    elif states:
        checker.problem(root, "(file)", "a dialogue with states needs a start state")
    if start in states:
        _check_graph(checker, start or "", states)
    if checker.problems:
        raise DialogueError(checker.problems)
    return Dialogue(
        id=dialogue_id,
        schema_version=CURRENT_SCHEMA_VERSION,
        source=source,
        start=start,
        states=MappingProxyType(states),
        commands=MappingProxyType(commands),
        messages=MappingProxyType(messages),
        settings=MappingProxyType(settings),
    )


def _text_map(checker: _Checker, node: yaml.Node | None, where: str) -> dict[str, str]:
    if node is None:
        return {}
    return {
        key: checker.text(value, f"{where}.{key}")
        for key, value in checker.mapping(node, where, set()).items()
    }


def _states(checker: _Checker, node: yaml.Node | None) -> dict[str, State]:
    if node is None:
        return {}
    states: dict[str, State] = {}
    key_lines = {
        key.value: key.start_mark.line + 1
        for key, _ in getattr(node, "value", [])
        if isinstance(key, yaml.ScalarNode)
    }
    for name, state_node in checker.mapping(node, "states", set()).items():
        if not _NAME.match(name):
            checker.problem(state_node, name, "state names use a-z, 0-9 and _")
        states[name] = _state(checker, name, state_node, key_lines[name])
    return states


def _state(checker: _Checker, name: str, node: yaml.Node, line: int) -> State:
    fields = checker.mapping(node, name, _STATE_KEYS)
    say = checker.text(fields["say"], name) if "say" in fields else ""
    end_node = fields.get("end")
    ends = end_node is not None and checker.scalar(end_node, name, bool) is True
    if "say" not in fields and not ends:
        # Only an end state may be silent (the application answers a Submit itself).
        checker.problem(node, name, "missing say")
    buttons: list[Button] = []
    if "buttons" in fields:
        if isinstance(fields["buttons"], yaml.SequenceNode):
            buttons = [_button(checker, name, b) for b in fields["buttons"].value]
        else:
            checker.problem(fields["buttons"], name, "buttons must be a list")
    seen: set[str] = set()
    for button, button_node in zip(
        buttons, getattr(fields.get("buttons"), "value", []), strict=False
    ):
        if button.id in seen or button.id == EXPLAIN_BUTTON_ID:
            checker.problem(button_node, name, f"button id '{button.id}' is used twice or reserved")
        seen.add(button.id)
    text_input = _text_input(checker, name, fields["text"]) if "text" in fields else None
    end = bool(checker.scalar(fields["end"], name, bool)) if "end" in fields else False
    columns = checker.scalar(fields["columns"], name, int) if "columns" in fields else 1
    if columns is not None and not 1 <= columns <= 3:
        checker.problem(fields["columns"], name, "columns must be 1, 2 or 3")
    explain = checker.text(fields["explain"], name) if "explain" in fields else None
    if end and (buttons or text_input or explain):
        checker.problem(node, name, "an end state takes no answer (no buttons, text or explain)")
    if not end and not buttons and text_input is None:
        checker.problem(node, name, "a state needs buttons, a text answer, or end: true")
    skip = _skip(checker, name, fields["skip"]) if "skip" in fields else None
    declines = (
        bool(checker.scalar(fields["declines"], name, bool)) if "declines" in fields else False
    )
    if declines and not end:
        checker.problem(node, name, "declines: true is for an end state")
    own_regions = (
        bool(checker.scalar(fields["own_regions"], name, bool))
        if "own_regions" in fields
        else False
    )
    if own_regions and (text_input is not None or not buttons):
        checker.problem(node, name, "own_regions: true is for a state of region buttons only")
    for button, button_node in zip(
        buttons, getattr(fields.get("buttons"), "value", []), strict=False
    ):
        # (Not back to the state itself: staff of one area would be chosen for in a loop.)
        if own_regions and (region_of(button) is None or button.to in (None, name)):
            checker.problem(
                button_node, name, f"button '{button.id}' must set a region and go on (own_regions)"
            )
    return State(
        name=name,
        line=line,
        say=say,
        buttons=tuple(buttons),
        columns=columns or 1,
        explain=explain,
        text=text_input,
        end=end,
        skip=skip,
        declines=declines,
        own_regions=own_regions,
    )


def _skip(checker: _Checker, state: str, node: yaml.Node) -> tuple[str, str] | None:
    """`skip: {when: <fact>, to: <state>}`: go straight on when the fact is known."""
    fields = checker.mapping(node, state, {"when", "to"})
    if "when" not in fields or "to" not in fields:
        checker.problem(node, state, "skip needs when: <fact> and to: <state>")
        return None
    return checker.name(fields["when"], state), checker.name(fields["to"], state)


def _targets(state: State) -> list[str]:
    """Every state this one can lead to."""
    targets = [b.to for b in state.buttons if b.to is not None]
    if state.text is not None:
        targets.append(state.text.to)
    if state.skip is not None:
        targets.append(state.skip[1])
    return targets


def _button(checker: _Checker, state: str, node: yaml.Node) -> Button:
    fields = checker.mapping(node, state, _BUTTON_KEYS)
    for required in ("id", "label"):
        if required not in fields:
            checker.problem(node, state, f"button missing {required}")
    button_id = checker.name(fields["id"], state) if "id" in fields else ""
    label = checker.text(fields["label"], state) if "label" in fields else ""
    if len(label) > 40:
        checker.problem(fields["label"], state, "button labels must fit on a phone (40 characters)")
    target = checker.name(fields["to"], state) if "to" in fields else None
    effects = checker.effects(fields["effects"], state) if "effects" in fields else ()
    return Button(button_id, label, target, effects)


def _text_input(checker: _Checker, state: str, node: yaml.Node) -> TextInput:
    fields = checker.mapping(node, state, _TEXT_KEYS)
    max_length = (
        checker.scalar(fields["max_length"], state, int) if "max_length" in fields else None
    )
    if max_length is None or not 1 <= max_length <= 4000:
        checker.problem(node, state, "text needs max_length between 1 and 4000")
    target = checker.name(fields["to"], state) if "to" in fields else ""
    if "to" not in fields:
        checker.problem(node, state, "text needs to: <state>")
    effects: tuple[EffectSpec, ...] = ()
    if "store" in fields:
        effects = (StoreAnswer(checker.name(fields["store"], state)),)
    if "effects" in fields:
        effects += checker.effects(fields["effects"], state)
    kind = checker.name(fields["kind"], state) if "kind" in fields else "text"
    if kind not in INPUT_KINDS:
        checker.problem(fields["kind"], state, f"kind must be one of {INPUT_KINDS}")
    save_as = checker.name(fields["save_as"], state) if "save_as" in fields else None
    return TextInput(max_length or 1, target, effects, kind, save_as)


def _commands(checker: _Checker, node: yaml.Node | None) -> dict[str, Command]:
    if node is None:
        return {}
    commands: dict[str, Command] = {}
    for name, command_node in checker.mapping(node, "commands", set()).items():
        where = f"/{name}"
        fields = checker.mapping(command_node, where, _COMMAND_KEYS)
        say = checker.text(fields["say"], where) if "say" in fields else None
        staff_say = checker.text(fields["staff_say"], where) if "staff_say" in fields else None
        start = checker.name(fields["start"], where) if "start" in fields else None
        effects = checker.effects(fields["effects"], where) if "effects" in fields else ()
        end_all = (
            bool(checker.scalar(fields["end_all"], where, bool)) if "end_all" in fields else False
        )
        if say is None and start is None:
            checker.problem(command_node, where, "a command needs say or start")
        requires = checker.name(fields["requires"], where) if "requires" in fields else None
        if requires is not None and requires not in ROLES:
            checker.problem(fields["requires"], where, f"requires must be one of {ROLES}")
        signed_up = (
            bool(checker.scalar(fields["signed_up"], where, bool))
            if "signed_up" in fields
            else False
        )
        commands[name] = Command(
            name,
            command_node.start_mark.line + 1,
            say,
            start,
            effects,
            end_all,
            requires,
            signed_up,
            staff_say,
        )
    return commands


def _check_graph(checker: _Checker, start: str, states: dict[str, State]) -> None:
    """Report targets that name no state and states no path from `start` reaches."""
    for state in states.values():
        for target in _targets(state):
            if target not in states:
                checker.problems.append(
                    Problem(
                        checker.source,
                        state.line,
                        state.name,
                        f"goes to '{target}', which does not exist",
                    )
                )
    reached = {start}
    queue = deque([start])
    while queue:
        state = states[queue.popleft()]
        nexts = _targets(state)
        for target in nexts:
            if target in states and target not in reached:
                reached.add(target)
                queue.append(target)
    for name, state in states.items():
        if name not in reached:
            checker.problems.append(
                Problem(checker.source, state.line, name, f"unreachable from start state '{start}'")
            )
        elif not state.end and not _can_finish(name, states):
            checker.problems.append(
                Problem(checker.source, state.line, name, "no path leads from here to an end state")
            )


def _can_finish(name: str, states: dict[str, State]) -> bool:
    seen = {name}
    queue = deque([name])
    while queue:
        state = states[queue.popleft()]
        if state.end:
            return True
        nexts = _targets(state)
        for target in nexts:
            if target in states and target not in seen:
                seen.add(target)
                queue.append(target)
    return False

"""Log privacy over the whole test session: the bot logs at DEBUG, and no bot token, no text or
name an invented person sent, and no raw Telegram id of theirs may appear in what it logs.

How it works (a pytest plugin, registered by tests/conftest.py):
- Logging at DEBUG, the way the bot sets it for LOG_LEVEL=DEBUG (bot.error_reporting
  .apply_log_levels: root at DEBUG; libraries that echo URLs or payloads - httpx, telegram,
  aiosqlite... - stay at WARNING, as they do in production). Every record of the pytest
  process is kept twice: formatted exactly as the bot's log handler writes it (the
  ScrubbingFormatter, traceback included), and, for the project's own loggers (bot., storage.,
  state_machines.), as the bare message, so our code cannot lean on the mask. Bot processes
  started by tests.harness.BotProcess run with LOG_LEVEL=DEBUG and their stderr is read too.
- What must not appear is learnt from every update put in the local Bot API server's queue
  (bot.local_api.updates.UPDATE_OBSERVERS), whatever test helper sent it, plus the tokens.
- Each test's logs are checked when the test is over (setup and teardown included) against
  what that test's people sent: per test, so the cost stays linear and a leak names its test.
  Findings are collected for the session; pytest_sessionfinish fails the run (exit status 1)
  and the terminal summary lists them. This works with -q and when only some files run,
  and under pytest-xdist (`make test`): each worker checks its own tests and hands its
  findings and counts to the controller, which reports them and fails the run.

What counts as a leak (needles), and why:
- tokens: every token the tests use, whole or just its secret half after the colon; and
  anything token-shaped (digits:30 characters) in the formatted output.
- ids: user and chat ids of the (non-bot) people and chats in an update, as absolute values
  (a group's -100123 is 100123), when they have 5 or more digits; matched as a whole run of
  digits. Shorter numbers cannot be told from counters, sequence numbers and ports, and the
  tests' invented people all have long ids, as real Telegram users do.
- texts: every message text and caption, stripped. Skipped: bare commands ("/start",
  "/probe@bot": the bot's own vocabulary; a "/start PAYLOAD" payload is checked on its own,
  as invite codes are secrets), texts shorter than 5 characters ("Yes", "No", "ok", "fine",
  "3" match everywhere and say nothing about anyone), and texts without a letter (pure
  digits of 5 or more count as ids, "12" or "!!!" are meaningless), and texts that are
  exactly a string constant of the bot's own code (hypothesis makes up such texts; the bot
  may log its own words). Long texts are also checked by their first 20 characters (a
  truncated quote is still a leak), and non-ASCII ones in JSON-escaped form too.
- names: first and last names and usernames of invented people, 4 characters or more, as
  whole words, case-sensitive ("Ada" is too short to tell from other words; FakePerson's
  default "Test" and the bot's own string constants are skipped).
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.error_reporting import LOG_FORMAT, ScrubbingFormatter, apply_log_levels
from bot.local_api.server import DEFAULT_TOKEN
from bot.local_api.updates import UPDATE_OBSERVERS

_PROJECT_LOGGERS = ("bot", "storage", "state_machines")
_TOKEN_SHAPE = re.compile(r"\d{3,20}:[A-Za-z0-9_-]{30,}")
_DIGIT_RUN = re.compile(r"\d{5,}")
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?")
_MIN_TEXT = 5
_MIN_NAME = 4
_PREFIX = 20
_SKIPPED_NAMES = frozenset({"Test"})
# Keys whose dict value is a Telegram User or Chat.
_PERSON_KEYS = frozenset(
    {"from", "chat", "user", "sender_chat", "forward_from", "forward_from_chat", "sender_user"}
)


@functools.cache
def _own_words() -> frozenset[str]:
    """Every string constant in the bot's own code. Hypothesis draws such constants into the
    texts it makes up (a junk message that reads "housekeeping", from bot/scheduler.py), and
    the bot logging its own words is no leak of what a person said."""
    root = Path(__file__).resolve().parents[1]
    words: set[str] = set()
    for package in _PROJECT_LOGGERS:
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    words.add(node.value.strip())
    return frozenset(words)


@dataclass
class Needles:
    """What one test's people sent, which no log may show."""

    tokens: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    texts: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    def add_text(self, text: str) -> None:
        text = text.strip()
        command = _COMMAND.match(text)
        if command is not None:
            text = text[command.end() :].strip()  # "/start PAYLOAD": the payload only
        if text.isdigit():
            if len(text) >= _MIN_TEXT:
                self.ids.add(text.lstrip("0") or "0")
            return
        if len(text) < _MIN_TEXT or not any(c.isalpha() for c in text) or text in _own_words():
            return
        self.texts.add(text)
        if len(text) > _PREFIX + 4:
            self.texts.add(text[:_PREFIX])
        if not text.isascii():
            self.texts.add(json.dumps(text)[1:-1])

    def add_update(self, update: Any) -> None:
        """Walk an update: texts, captions, and the ids and names of people and chats."""
        if isinstance(update, list):
            for value in update:
                self.add_update(value)
            return
        if not isinstance(update, dict):
            return
        sender = update.get("from")
        if isinstance(sender, dict) and sender.get("is_bot"):
            return  # the bot's own message (under a callback query): its words, not a person's
        for key, value in update.items():
            if key == "reply_markup":
                continue  # button labels are the bot's
            if key in ("text", "caption") and isinstance(value, str):
                self.add_text(value)
            elif key in _PERSON_KEYS and isinstance(value, dict):
                self._add_person(value)
            if isinstance(value, dict | list):
                self.add_update(value)

    def _add_person(self, person: dict[str, Any]) -> None:
        if person.get("is_bot"):
            return
        if isinstance(person.get("id"), int) and len(str(abs(person["id"]))) >= 5:
            self.ids.add(str(abs(person["id"])))
        for key in ("first_name", "last_name", "username"):
            name = person.get(key)
            if (
                isinstance(name, str)
                and len(name) >= _MIN_NAME
                and name not in _SKIPPED_NAMES
                and name not in _own_words()
            ):
                self.names.add(name)

    def find(self, log: str, *, token_shapes: bool = True) -> list[str]:
        """Every needle found in `log`, each with the line it is on."""
        found: list[tuple[str, str]] = []
        for token in self.tokens:
            secret = token.partition(":")[2]
            for needle in (token, secret):
                if needle and needle in log:
                    found.append(("token", needle))
        if token_shapes:
            shapes = {m.group(0) for m in _TOKEN_SHAPE.finditer(log)} - self.tokens
            found += [("token-shaped", shape) for shape in sorted(shapes)]
        runs = {run.lstrip("0"): run for run in _DIGIT_RUN.findall(log)}  # "07700..." typed
        found += [("id", runs[run]) for run in sorted(runs.keys() & self.ids)]
        found += [("text", text) for text in sorted(self.texts) if text in log]
        if self.names:
            alternatives = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
            names = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
            found += [("name", n) for n in sorted({m.group(0) for m in names.finditer(log)})]
        return [f"{kind} {needle!r} in: {_line_with(log, needle)}" for kind, needle in found]


def _line_with(log: str, needle: str) -> str:
    for line in log.splitlines():
        if needle in line:
            return line.strip()[:300]
    return "?"


class _Capture(logging.Handler):
    """Keeps every record twice: as the bot's handler writes it, and (own loggers) bare."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.formatter_ = ScrubbingFormatter(LOG_FORMAT)
        self.written: list[str] = []
        self.bare: list[str] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.written.append(self.formatter_.format(record))
            if record.name.split(".", 1)[0] in _PROJECT_LOGGERS:
                self.bare.append(f"{record.name}: {record.getMessage()}")
            self.count += 1
        except Exception:  # a record that cannot be formatted is kept as its bare template
            self.written.append(str(record.msg))

    def take(self) -> tuple[list[str], list[str]]:
        written, bare = self.written, self.bare
        self.written, self.bare = [], []
        return written, bare


_PROCESS_LOGS: list[Path] = []
_ACTIVE = False


def note_process_log(path: Path) -> None:
    """A bot process writes its log to `path`; read it when the current test is over."""
    if _ACTIVE:
        _PROCESS_LOGS.append(path)


class LogPrivacy:
    """The pytest plugin (see the module docstring)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens = {DEFAULT_TOKEN, *tokens}
        self.capture = _Capture()
        self.needles = self._fresh()
        self.findings: list[str] = []
        self.tests = 0
        self.records = 0
        self.process_logs = 0
        self.process_bytes = 0
        self.sent = 0

    def _fresh(self) -> Needles:
        return Needles(tokens=set(self.tokens))

    def observe(self, update: dict[str, Any]) -> None:
        self.sent += 1
        self.needles.add_update(update)

    def start(self) -> None:
        global _ACTIVE
        _ACTIVE = True
        UPDATE_OBSERVERS.append(self.observe)
        self._attach()

    def _attach(self) -> None:
        # A test may call the bot's setup_logging in-process, which replaces root's handlers.
        root = logging.getLogger()
        if self.capture not in root.handlers:
            root.addHandler(self.capture)
        apply_log_levels("DEBUG")

    def scan_current(self) -> list[str]:
        """Check (and forget) what was logged since the last check, against the needles."""
        written, bare = self.capture.take()
        self.records += len(written)
        logs = ["\n".join(written)]
        for path in dict.fromkeys(_PROCESS_LOGS):  # a restarted bot appends to the same file
            if path.exists():
                text = path.read_text("utf-8", errors="replace")
                self.process_logs += 1
                self.process_bytes += len(text)
                logs.append(text)
        _PROCESS_LOGS.clear()
        findings = [f for log in logs for f in self.needles.find(log)]
        # The bare messages of our own code: ids and tokens must not rely on the mask.
        findings += [f"(bare) {f}" for f in self.needles.find("\n".join(bare))]
        return findings

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self._attach()
        self.capture.take()
        self.needles = self._fresh()
        try:
            return (yield)
        finally:
            self.tests += 1
            self.findings += [f"{item.nodeid}: {f}" for f in self.scan_current()]
            self.needles = self._fresh()

    # Under pytest-xdist each worker process runs tests with its own plugin; the worker hands
    # its counts and findings to the controller, which reports and fails the run for all.
    _COUNTERS = ("tests", "records", "process_logs", "process_bytes", "sent")

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        report = getattr(node, "workeroutput", {}).get("log_privacy")
        if report is None:
            return
        for counter in self._COUNTERS:
            setattr(self, counter, getattr(self, counter) + report[counter])
        self.findings += report["findings"]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        worker_output = getattr(session.config, "workeroutput", None)
        if worker_output is not None:
            worker_output["log_privacy"] = {
                "findings": self.findings,
                **{counter: getattr(self, counter) for counter in self._COUNTERS},
            }
            return
        if self.sent and not self.records and not self.process_logs:
            self.findings.append("people sent updates but no log record was captured at all")
        if self.findings and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        summary = (
            f"log privacy (DEBUG): {self.tests} tests, {self.records} log records, "
            f"{self.process_logs} bot process logs ({self.process_bytes} bytes), "
            f"{self.sent} updates from invented people"
        )
        if not self.findings:
            terminalreporter.write_line(f"{summary}: no token, text, name or id leaked")
            return
        terminalreporter.section("log privacy: LEAKS", red=True)
        terminalreporter.write_line(summary)
        for finding in self.findings[:50]:
            terminalreporter.write_line(finding)
        if len(self.findings) > 50:
            terminalreporter.write_line(f"... and {len(self.findings) - 50} more")

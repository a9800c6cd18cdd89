"""Fault injection: scripted errors, blocked chats, slow answers and held calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ._json import ChatId, Params
from .errors import ApiError

ParamsPredicate = Callable[[Params], bool]


def _norm(method: str | None) -> str | None:
    # Telegram method names are case-insensitive.
    return method.lower() if method else None


def _matches(
    want_method: str | None, want_chat: ChatId | None, method: str, chat_id: ChatId | None
) -> bool:
    if want_method is not None and want_method != method.lower():
        return False
    return want_chat is None or want_chat == chat_id


@dataclass(slots=True)
class FailRule:
    """Answer the next ``remaining`` matching calls with an error."""

    method: str | None
    status: int
    retry_after: int | None
    remaining: int
    chat_id: ChatId | None
    description: str | None

    def to_error(self) -> ApiError:
        """The Telegram-style error this rule produces."""
        retry_after = self.retry_after if self.status == 429 else None
        return ApiError(self.status, self.description, retry_after=retry_after)


@dataclass(slots=True)
class DropRule:
    """Cut the connection of the next ``remaining`` matching calls, with no answer.

    ``after_processing=False``: the call never reached Telegram (nothing happened).
    ``after_processing=True``: Telegram did what was asked but the answer was lost, so the
    caller cannot tell whether it worked."""

    method: str | None
    remaining: int
    chat_id: ChatId | None
    after_processing: bool


class Hold:
    """Holds back the next matching call until the test releases it.

    ``release(deliver=True)`` lets the call be processed and answered normally;
    ``release(deliver=False)`` drops it as if the connection died before Telegram
    processed it: nothing is delivered and the connection is aborted.
    """

    def __init__(
        self, method: str | None, chat_id: ChatId | None, predicate: ParamsPredicate | None
    ) -> None:
        self.method = method
        self.chat_id = chat_id
        self.predicate = predicate
        self.arrived = asyncio.Event()
        self.params: Params | None = None
        self._released = asyncio.Event()
        self._deliver = True

    def __repr__(self) -> str:
        state = (
            "released"
            if self._released.is_set()
            else "arrived"
            if self.arrived.is_set()
            else "waiting"
        )
        return f"Hold(method={self.method!r}, chat_id={self.chat_id!r}, {state})"

    @property
    def released(self) -> bool:
        """True once release() was called."""
        return self._released.is_set()

    def matches(self, method: str, chat_id: ChatId | None, params: Params) -> bool:
        """Whether this hold captures the given call (a hold released before its call came
        is withdrawn: it captures nothing)."""
        if self._released.is_set():
            return False
        if not _matches(_norm(self.method), self.chat_id, method, chat_id):
            return False
        return self.predicate is None or self.predicate(params)

    def release(self, deliver: bool = True) -> None:
        """Let the held call continue (deliver=True) or drop it (deliver=False)."""
        if not self._released.is_set():
            self._deliver = deliver
            self._released.set()

    # A timeout argument (not asyncio.timeout) keeps test code one line per wait.
    async def wait(self, timeout: float = 10.0) -> Params:  # noqa: ASYNC109
        """Wait until the held call arrived; returns its decoded params."""
        try:
            await asyncio.wait_for(self.arrived.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no call matching {self!r} arrived within {timeout}s") from None
        assert self.params is not None  # set before arrived is signalled
        return self.params

    def capture(self, params: Params) -> None:
        """Server side: the call arrived and is now held."""
        self.params = params
        self.arrived.set()

    async def outcome(self) -> bool:
        """Server side: wait for release; True means deliver."""
        await self._released.wait()
        return self._deliver


class Faults:
    """All fault-injection settings of one server."""

    def __init__(self) -> None:
        self._rules: list[FailRule] = []
        self._blocked: set[ChatId] = set()
        self._delays: dict[tuple[str | None, ChatId | None], float] = {}
        self._holds: list[Hold] = []
        self._captured: list[Hold] = []
        self._drops: list[DropRule] = []

    def drop_next(
        self, method: str | None, times: int, chat_id: ChatId | None, after_processing: bool
    ) -> DropRule:
        """Queue a dropped connection for the next ``times`` matching calls."""
        if times < 1:
            raise ValueError("times must be at least 1")
        rule = DropRule(method, times, chat_id, after_processing)
        self._drops.append(rule)
        return rule

    def take_drop(self, method: str, chat_id: ChatId | None, after_processing: bool) -> bool:
        """Consume the first drop rule for this call and moment, if any."""
        for rule in self._drops:
            if rule.after_processing == after_processing and _matches(
                _norm(rule.method), rule.chat_id, method, chat_id
            ):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._drops.remove(rule)
                return True
        return False

    def fail_next(
        self,
        method: str | None,
        status: int,
        retry_after: int | None,
        times: int,
        chat_id: ChatId | None,
        description: str | None,
    ) -> FailRule:
        """Queue an error for the next ``times`` matching calls."""
        if times < 1:
            raise ValueError("times must be at least 1")
        rule = FailRule(method, status, retry_after, times, chat_id, description)
        self._rules.append(rule)
        return rule

    def take_failure(self, method: str, chat_id: ChatId | None) -> ApiError | None:
        """Consume the first rule matching this call, if any."""
        for rule in self._rules:
            if _matches(_norm(rule.method), rule.chat_id, method, chat_id):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule.to_error()
        return None

    def block(self, chat_id: ChatId) -> None:
        """Every send to this chat answers 403 until unblock()."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: ChatId) -> None:
        """Undo block()."""
        self._blocked.discard(chat_id)

    def is_blocked(self, chat_id: ChatId | None) -> bool:
        """Whether sends to this chat are blocked by the test."""
        return chat_id is not None and chat_id in self._blocked

    def set_delay(self, method: str | None, seconds: float, chat_id: ChatId | None) -> None:
        """Sleep before answering matching calls; 0 removes the delay."""
        key = (_norm(method), chat_id)
        if seconds > 0:
            self._delays[key] = seconds
        else:
            self._delays.pop(key, None)

    def delay_for(self, method: str, chat_id: ChatId | None) -> float:
        """The most specific delay configured for this call."""
        name = method.lower()
        for key in ((name, chat_id), (name, None), (None, chat_id), (None, None)):
            if key in self._delays and (key[1] is None or chat_id is not None):
                return self._delays[key]
        return 0.0

    def hold(
        self, method: str | None, chat_id: ChatId | None, predicate: ParamsPredicate | None
    ) -> Hold:
        """Register a hold for the next matching call."""
        hold = Hold(method, chat_id, predicate)
        self._holds.append(hold)
        return hold

    def take_hold(self, method: str, chat_id: ChatId | None, params: Params) -> Hold | None:
        """Capture this call with the first matching hold (each hold fires once)."""
        for hold in self._holds:
            if hold.matches(method, chat_id, params):
                self._holds.remove(hold)
                self._captured.append(hold)
                hold.capture(params)
                return hold
        return None

    def release_all(self, deliver: bool = False) -> None:
        """Shutdown: let every captured call finish so the server can stop."""
        for hold in self._captured:
            hold.release(deliver)
        self._captured.clear()
        self._holds.clear()

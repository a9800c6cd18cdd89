"""The queue of updates waiting for the bot (shared by getUpdates and webhook delivery)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._json import JsonDict
from .notify import Notifier

# Update types Telegram withholds unless explicitly listed in allowed_updates.
_OPT_IN_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Called with every update put in any queue. The tests' log-privacy check learns here which
# texts, names and ids the invented people sent, so it can prove none of them reach a log.
UPDATE_OBSERVERS: list[Callable[[JsonDict], None]] = []


@dataclass(slots=True)
class PendingUpdate:
    """An unconfirmed update; ``seq`` is unique even when tests reuse update ids."""

    seq: int
    update_id: int
    payload: JsonDict
    kind: str
    order_key: str
    # An extra copy from repeat_updates(): delivered once, after this many more batches,
    # even when the offset has already confirmed its id (as a redelivery would be).
    echo_after: int | None = None


def update_kind(update: JsonDict) -> str:
    """The update's type, i.e. its one field besides update_id."""
    for key in update:
        if key != "update_id":
            return key
    return "unknown"


def _order_key(body: Any, seq: int) -> str:
    # Webhook delivery keeps per-chat order; updates without a chat are independent.
    if isinstance(body, dict):
        for holder in (body, body.get("message")):
            if isinstance(holder, dict) and isinstance(holder.get("chat"), dict):
                return f"chat:{holder['chat'].get('id')}"
        sender = body.get("from")
        if isinstance(sender, dict):
            return f"user:{sender.get('id')}"
    return f"update:{seq}"


class UpdateQueue:
    """Unconfirmed updates in arrival order."""

    def __init__(self, notifier: Notifier, first_update_id: int = 1) -> None:
        self._notifier = notifier
        self._pending: list[PendingUpdate] = []
        self._next_id = first_update_id
        self._seq = 0
        self.allowed_updates: list[str] | None = None
        self._chaos: random.Random | None = None
        self._max_copies = 1
        self.repeated_deliveries = 0  # extra copies from repeat_updates() handed out

    @property
    def pending(self) -> list[PendingUpdate]:
        """Snapshot of unconfirmed updates, oldest first."""
        return list(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, update: JsonDict, update_id: int | None = None) -> int:
        """Enqueue an update; returns its update_id.

        Auto ids are monotonic and continue above any explicit id, like Telegram's.
        Updates of types the bot did not allow are dropped, as Telegram does.
        """
        if update_id is None:
            update_id = self._next_id
        self._next_id = max(self._next_id, update_id + 1)
        payload: JsonDict = {"update_id": update_id, **update}
        for observer in UPDATE_OBSERVERS:
            observer(payload)
        kind = update_kind(payload)
        if self.allows(kind):
            self._seq += 1
            body = payload.get(kind)
            self._pending.append(
                PendingUpdate(self._seq, update_id, payload, kind, _order_key(body, self._seq))
            )
            if self._chaos is not None:
                for _ in range(self._chaos.randint(1, self._max_copies) - 1):
                    self._seq += 1
                    self._pending.append(
                        PendingUpdate(
                            self._seq,
                            update_id,
                            payload,
                            kind,
                            _order_key(body, self._seq),
                            echo_after=self._chaos.randint(0, 3),
                        )
                    )
            self._notifier.notify()
        return update_id

    def repeat_updates(self, seed: int | None, max_copies: int = 5) -> None:
        """Fault injection: from now on every update is delivered 1 to ``max_copies`` times
        (the extra copies a few batches later) and every getUpdates batch is shuffled.
        ``seed=None`` turns it off; copies already queued are still delivered."""
        self._chaos = None if seed is None else random.Random(seed)
        self._max_copies = max(1, max_copies)

    def restart_ids(self, first_update_id: int) -> None:
        """Fault injection: number the next updates from ``first_update_id``, which may be
        lower than ids already used (Telegram picks a new start after a week of silence)."""
        self._next_id = first_update_id

    @property
    def tail_id(self) -> int:
        """The id the next automatically numbered update gets."""
        return self._next_id

    def allows(self, kind: str) -> bool:
        """Whether the current allowed_updates setting lets this type through."""
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in _OPT_IN_TYPES

    def set_allowed(self, allowed: object) -> None:
        """Telegram keeps the previous setting when the parameter is absent; [] resets it."""
        if isinstance(allowed, list):
            self.allowed_updates = [str(kind) for kind in allowed] or None

    def confirm_below(self, offset: int) -> None:
        """getUpdates offset semantics: every update with update_id < offset is forgotten.

        An offset "in the future" (more than 10 past the next id, as after ids restarted
        lower) confirms nothing: Telegram's server then answers from the queue's head
        (tdlib's TQueue::get refuses it and Client::do_get_updates falls back to the head).
        Extra copies from repeat_updates() wait until they were delivered once."""
        if offset > self._next_id + 10:
            return
        kept = [
            entry
            for entry in self._pending
            if entry.update_id >= offset or entry.echo_after is not None
        ]
        self._replace(kept)

    def keep_last(self, count: int) -> None:
        """Negative offsets: keep only the newest ``count`` updates."""
        self._replace(self._pending[-count:] if count > 0 else [])

    def take(self, limit: int) -> list[JsonDict]:
        """The oldest ``limit`` updates, left in the queue until confirmed (in a shuffled
        order, with due extra copies, while repeat_updates() is on)."""
        if not any(entry.echo_after is not None for entry in self._pending) and not self._chaos:
            return [entry.payload for entry in self._pending[:limit]]
        batch: list[PendingUpdate] = []
        for entry in self._pending:
            if entry.echo_after is None or entry.echo_after <= 0:
                batch.append(entry)
            else:
                entry.echo_after -= 1
        batch = batch[:limit]
        delivered = {entry.seq for entry in batch if entry.echo_after is not None}
        self.repeated_deliveries += len(delivered)
        self._pending = [entry for entry in self._pending if entry.seq not in delivered]
        if self._chaos is not None:
            self._chaos.shuffle(batch)
        return [entry.payload for entry in batch]

    def remove(self, entry: PendingUpdate) -> None:
        """Confirm one update (webhook got a 2xx)."""
        self._replace([other for other in self._pending if other.seq != entry.seq])

    def clear(self) -> None:
        """drop_pending_updates."""
        self._replace([])

    def _replace(self, kept: list[PendingUpdate]) -> None:
        if len(kept) != len(self._pending):
            self._pending = kept
            self._notifier.notify()

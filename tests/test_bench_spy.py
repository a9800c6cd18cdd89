"""The profile summary (`make profile`) counts what it says: threads waiting are left out,
SQLite's C time is charged to the storage function that asked, YouSaid's own functions are
listed apart. Stacks written as py-spy's raw format writes them (outermost first)."""

from __future__ import annotations

from bench.spy import render, summarise

_LOOP = "run_forever (asyncio/base_events.py:607);Handle._run (asyncio/events.py:80)"
_ENQUEUE = (
    f"{_LOOP};ConversationService._step_and_store (bot/conversation.py:582);"
    "Outbox.enqueue (storage/queues.py:174);Connection.execute_fetchall (aiosqlite/core.py:242);"
    "_Connection._execute (storage/database.py:185);"
    "Connection._execute_fetchall (aiosqlite/core.py:147)"
)
STACKS = [
    f"{_ENQUEUE} 30",
    f"{_LOOP};ConversationService._step_and_store (bot/conversation.py:590) 5",
    f"{_LOOP};Update.de_json (telegram/_update.py:500) 15",
    "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81) 40",
    "Thread._bootstrap (threading.py:1002);_connection_worker_thread (aiosqlite/core.py:59) 9",
    "Thread._bootstrap (threading.py:1002);_connection_worker_thread (aiosqlite/core.py:63);"
    "_Connection.commit_in_thread.<locals>.commit (storage/database.py:222) 10",
    f"{_LOOP};EpollSelector.select (selectors.py:468) 1",
    "",
]


def test_waiting_threads_are_left_out_and_sqlite_is_charged_to_its_asker() -> None:
    summary = summarise(STACKS)
    assert summary.samples == 110
    assert summary.idle == 50
    assert summary.working == 60
    assert summary.by_area["SQLite (C)"] == 40
    assert summary.by_area["telegram"] == 15
    assert summary.by_area["bot"] == 5
    assert summary.sqlite_by_asker["Outbox.enqueue (storage/queues.py)"] == 30
    commit = "_Connection.commit_in_thread.<locals>.commit (storage/database.py)"
    assert summary.sqlite_by_asker[commit] == 10
    assert summary.own_functions == {"ConversationService._step_and_store (bot/conversation.py)": 5}
    # Inclusive: both lines of _step_and_store count once each, whatever their line numbers.
    assert summary.inclusive["ConversationService._step_and_store (bot/conversation.py)"] == 35


def test_the_summary_gives_shares_of_working_time() -> None:
    text = render(summarise(STACKS), top=5)
    assert "110 samples, 50 of threads waiting (left out), 60 working." in text
    assert "| 40 | 66.7% | `SQLite (C)` |" in text
    assert "| 30 | 50.0% | `Outbox.enqueue (storage/queues.py)` |" in text

"""The sender-process experiment (bench/sender_process.py) still measures what it says: a
small burst, once with the bot as shipped and once with its sender in a child process,
every reply delivered, none twice. Not timed (speed is only ever reported by
the benchmarks themselves)."""

from __future__ import annotations

from pathlib import Path

from bench import inbound, sender_process


async def test_the_burst_is_answered_in_both_shapes(tmp_path: Path) -> None:
    people = 4
    every_step = sum(len(inbound.script_for(n)) for n in range(people))
    rows = []
    for separate in (False, True):
        folder = tmp_path / str(separate)
        folder.mkdir()
        rows.append(await sender_process.run_once(people, folder, separate))
    shipped, separate_sender = rows
    for row in rows:
        assert row["updates"] == every_step, row
        assert row["replies_missing"] == 0, row
        assert row["failed_calls"] == 0, row
    # the same calls either way, and the child's getMe: nothing sent twice (the bot's own
    # sender stays parked)
    assert separate_sender["bot_api_calls"] == shipped["bot_api_calls"] + 1
    assert shipped["sender_process_cpu_s"] == 0.0
    assert isinstance(separate_sender["sender_process_cpu_s"], float)
    assert separate_sender["sender_process_cpu_s"] > 0  # the child did the sending

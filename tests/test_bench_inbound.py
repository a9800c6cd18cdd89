"""The inbound benchmark still measures what it says: a small burst through all three bots,
with the local Bot API server in a process of its own (the default) and in the bot's.

Not a timed test (speed is only ever reported by `make bench`): it checks that every
update of each round was handled, every person got their reply, and every answer was
stored, so a broken benchmark fails here rather than printing a wrong number."""

from __future__ import annotations

import statistics

import pytest

from bench import __main__ as bench_main
from bench import inbound


@pytest.mark.parametrize(
    ("server_in_process", "repeats"), [(False, 2), (True, 1)], ids=["own process", "in process"]
)
async def test_a_small_burst_is_handled_replied_to_and_stored(
    server_in_process: bool, repeats: int
) -> None:
    people = 6
    results = await inbound.run(
        people,
        baseline_updates=24,
        profile_path=None,
        server_in_process=server_in_process,
        repeats=repeats,
    )

    *trios, (whole,) = results
    assert len(trios) == repeats  # each run on the subset with databases of its own
    every_step = sum(len(inbound.script_for(n)) for n in range(people))
    assert whole.updates == every_step
    assert whole.notes["answers_stored"] == people * 5  # four scores and the written answer
    assert whole.notes["pending_in_inbox"] == 0
    for measure in [*(m for trio in trios for m in trio), whole]:
        assert 0 < measure.updates <= max(24, every_step), measure.name
        assert measure.notes["rounds_without_a_reply"] == 0, measure.name
        assert measure.notes["failed_calls"] == 0, measure.name
        assert len(measure.latencies) == measure.updates, measure.name
        assert all(latency > 0 for latency in measure.latencies), measure.name
        assert measure.per_second > 0, measure.name
        # CPU is read for the bot's process and, in a process of their own, the server's
        assert measure.cpu_seconds > 0, measure.name
        assert measure.wall_seconds > 0, measure.name
        if server_in_process:
            assert measure.server_cpu_seconds is None, measure.name
        else:  # counted in 10 ms ticks: a tiny run may read 0, all of them together not
            assert measure.server_cpu_seconds is not None, measure.name
            assert measure.server_cpu_seconds >= 0, measure.name
    if not server_in_process:
        every_run = [*(m for trio in trios for m in trio), whole]
        assert sum(m.server_cpu_seconds or 0.0 for m in every_run) > 0
    for ceiling, peer, same in trios:
        assert ceiling.updates == peer.updates == same.updates
        assert same.notes["answers_stored"] == peer.notes["answers_stored"]
    summary = inbound.report(results, server_in_process)
    assert summary["server"] == (
        "in the bot's process" if server_in_process else "in its own process"
    )
    assert summary["repeats"] == repeats
    assert len(summary["subset_ratios_vs_ceiling"]) == repeats
    ratios = sorted(t[2].per_second / t[0].per_second for t in trios)
    assert summary["subset_ratio_vs_ceiling"] == round(statistics.median(ratios), 3)
    assert [row["name"] for row in summary["rows"]] == [
        "ceiling (reply only)",
        "peer (ConversationHandler)",
        "yousaid (same subset)",
        f"yousaid ({people:,} people)",
    ]
    cpu_ratios = sorted(t[2].cpu_ms_per_update / t[1].cpu_ms_per_update for t in trios)
    assert summary["subset_cpu_vs_peer"] == round(statistics.median(cpu_ratios), 3)
    assert summary["one_core_limit_updates_per_s"] == round(1000 / whole.cpu_ms_per_update, 1)
    assert (summary["machine_limit_updates_per_s"] is None) == server_in_process
    *_, (_, _, limits, _) = bench_main.cpu_rows(summary)
    assert f"3 × peer is {summary['three_times_peer_updates_per_s']:.0f}/s" in limits

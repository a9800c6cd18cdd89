"""bench/ab.py's table and medians, from summaries shaped as `bench.inbound --json` writes
them (no benchmark is run here: speed is only ever reported by bench/)."""

from __future__ import annotations

from typing import Any

from bench.ab import Run, report


def summary(ceiling_cpu: float, whole_cpu: float) -> dict[str, Any]:
    def row(name: str, per_s: float, cpu: float) -> dict[str, Any]:
        return {"name": name, "updates_per_s": per_s, "cpu_ms_per_update": cpu}

    return {
        "rows": [
            row("ceiling (reply only)", 400.0, ceiling_cpu),
            row("peer (ConversationHandler)", 150.0, 5.6),
            row("yousaid (same subset)", 250.0, whole_cpu),
            row("yousaid (1,000 people)", 255.0, whole_cpu),
        ],
        "ratio_vs_ceiling": 0.6375,
        "ratio_vs_peer": 1.7,
        "subset_ratio_vs_ceiling": 0.625,
        "subset_ratio_vs_peer": 1.6667,
    }


def test_rows_as_findings_quotes_them_and_the_change_in_cpu() -> None:
    runs = [
        Run("before", "abc1234", "00:51:03", summary(2.0, 4.0)),
        Run("after", "working tree", "00:52:14", summary(2.0, 3.6)),
        Run("before", "abc1234", "00:54:34", summary(2.5, 4.5)),
        Run("after", "working tree", "00:53:24", summary(2.5, 4.0)),
    ]
    text = report(runs)
    lines = text.splitlines()
    assert lines[2] == (
        "| 1 before (abc1234), 00:51:03 | 400.0/s, 2.0 ms | 250.0/s, 4.0 ms | 255.0/s, 4.0 ms "
        "| 2.00 | 0.64 / 1.70 (subset 0.62 / 1.67) |"
    )
    assert lines[5].startswith("| 2 after (working tree), 00:53:24 |")
    # CPU per update: medians 4.25 -> 3.8; ÷ ceiling: 2.0, 1.8 before; 1.8, 1.6 after.
    assert lines[-1] == (
        "Medians: whole-burst CPU per update 4.25 ms before, 3.80 after (-10.6%); "
        "÷ the ceiling's 1.90 before, 1.70 after (-10.5%)."
    )

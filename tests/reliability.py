"""Per-scenario counts of the fault suite, for docs/reliability.md.

When RELIABILITY_RESULTS names a directory (`make reliability` and `make soak` set it), each
scenario writes `<scenario>.json` there: how many times it ran, whether it passed, and its
own counters. tests/reliability_report.py turns the files into the report."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def record(scenario: str, runs: int, passed: bool, details: Any = None) -> None:
    """Write one scenario's result, if results are being collected."""
    folder = os.environ.get("RELIABILITY_RESULTS")
    if not folder:
        return
    if dataclasses.is_dataclass(details) and not isinstance(details, type):
        details = dataclasses.asdict(details)
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    result = {
        "scenario": scenario,
        "runs": runs,
        "passed": passed,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "details": details or {},
    }
    (path / f"{scenario}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

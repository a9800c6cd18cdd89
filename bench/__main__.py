"""`make bench`: every benchmark, each in its own process, then a table and bench/RESULTS.md.

    .venv/bin/python -m bench [--quick] [--only inbound,startup,...]

Benchmarks, not tests: nothing here passes or fails. Each benchmark runs its baselines in
the same run, and the table reports ratios against them (these machines are shared and
noisy). RESULTS.md is the generated figures followed by bench/FINDINGS.md (the profiles,
what was changed, before and after), which is written by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (module, normal arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "broadcast": ("bench.broadcast", [], ["--recipients", "3000"]),
    "inbound": ("bench.inbound", [], ["--people", "500", "--baseline-updates", "1000"]),
    "startup": ("bench.startup", [], ["--people", "10000", "--mid-dialogue", "1000"]),
    "digest": ("bench.digest_scale", ["--runs", "1"], ["--answers", "100000", "--people", "5000"]),
    "jobs": ("bench.jobs", [], ["--people", "24000"]),
}


def run_one(name: str, quick: bool, folder: Path) -> dict[str, Any]:
    module, normal, fast = BENCHMARKS[name]
    out = folder / f"{name}.json"
    command = [sys.executable, "-m", module, *(fast if quick else normal), "--json", str(out)]
    if name == "digest":
        command += ["--cache", str(folder / "digest-cache")]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0 or not out.exists():
        return {"error": f"exit {done.returncode}", "seconds": round(seconds, 1)}
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall_seconds"] = round(seconds, 1)
    return result


def machine() -> str:
    cpu = "unknown CPU"
    with_cpu = Path("/proc/cpuinfo")
    if with_cpu.exists():
        for line in with_cpu.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at the start {load:.2f}"
    )


def rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(benchmark, measure, result, target) for the table."""
    table: list[tuple[str, str, str, str]] = []
    if "broadcast" in results:
        b = results["broadcast"]
        if "error" in b:
            table.append(("broadcast", "run", b["error"], ""))
        else:
            table += [
                (
                    "broadcast",
                    "achieved ÷ allowed rate",
                    f"{b['ratio']:.3f} ({b['achieved_per_s']:.1f}/s of {b['allowed_per_s']:.0f}/s,"
                    f" {b['recipients']:,} recipients)",
                    "≥ 0.95",
                ),
                (
                    "broadcast",
                    "429s / duplicates / missed",
                    f"{b['429s']} / {b['duplicates']} / {b['missed']}",
                    "0 / 0 / 0",
                ),
            ]
    if "inbound" in results:
        i = results["inbound"]
        if "error" in i:
            table.append(("inbound", "run", i["error"], ""))
        else:
            # Runs before the fifth round kept the server in the bot's process.
            where = i.get("server", "in the bot's process")
            table.append(("inbound", "local Bot API server and the people", where, ""))
            for row in i["rows"]:
                table.append(
                    (
                        "inbound",
                        row["name"],
                        f"{row['updates_per_s']:.1f} updates/s ({row['updates']:,} updates), "
                        f"handled p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms; "
                        f"replied p50 {row.get('reply_p50_ms', 0):.0f} ms, "
                        f"p99 {row.get('reply_p99_ms', 0):.0f} ms; "
                        f"{row.get('failed_calls', 0):,} Bot API calls refused",
                        "",
                    )
                )
            table += [
                (
                    "inbound",
                    "yousaid ÷ ceiling (whole burst / same subset)",
                    f"{i['ratio_vs_ceiling']:.2f} / {i['subset_ratio_vs_ceiling']:.2f}"
                    + _spread(i, "subset_ratios_vs_ceiling"),
                    "≥ 0.5",
                ),
                (
                    "inbound",
                    "yousaid ÷ peer (whole burst / same subset)",
                    f"{i['ratio_vs_peer']:.2f} / {i['subset_ratio_vs_peer']:.2f}"
                    + _spread(i, "subset_ratios_vs_peer"),
                    "≥ 3",
                ),
            ]
            table += cpu_rows(i)
    if "startup" in results:
        s = results["startup"]
        if "error" in s:
            table.append(("startup", "run", s["error"], ""))
        else:
            table += [
                (
                    "startup",
                    f"ready to serve ({s['people']:,} people, {s['mid_dialogue']:,} mid check-in)",
                    f"{s['ready_seconds']:.2f} s",
                    "< 2 s",
                ),
                (
                    "startup",
                    f"peak resident memory (VmHWM, after {s['answered']:,} answers)",
                    f"{s['peak_rss_mb']:.0f} MB",
                    "< 250 MB",
                ),
            ]
    if "digest" in results:
        d = results["digest"]
        if "error" in d:
            table.append(("digest", "run", d["error"], ""))
        else:
            table += [
                (
                    "digest",
                    f"all 12 weekly digests (+ national), {d['answers']:,} answers, "
                    f"{d['people']:,} people",
                    f"{d['best_seconds']:.2f} s (best of {len(d['runs'])})",
                    "< 5 s",
                ),
                (
                    "digest",
                    "peak resident memory (/usr/bin/time -v)",
                    f"{d['peak_rss_mb']:.0f} MB",
                    "< 300 MB",
                ),
            ]
            if "write_lock_held_seconds" in d:
                table.append(
                    (
                        "digest",
                        "write lock held by the release (every update waits meanwhile)",
                        f"{d['write_lock_held_seconds'] * 1000:.0f} ms (worst of "
                        f"{len(d['runs'])}); built inside the transaction: "
                        f"{d['write_lock_held_seconds_built_inside']:.2f} s",
                        "",
                    )
                )
    if "jobs" in results:
        table += job_rows(results["jobs"])
    return table


def cpu_rows(inbound: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """CPU per update (from the eighth round on): what each bot's process spent, the
    server's beside it, and the most one process could handle at yousaid's cost."""
    if "subset_cpu_vs_peer" not in inbound:
        return []
    labels = ("ceiling", "peer", "yousaid, subset", "yousaid, whole burst")
    spent = "; ".join(
        f"{label} {row['cpu_ms_per_update']:.2f} ms"
        + (
            f" ({row['server_cpu_ms_per_update']:.2f})"
            if row.get("server_cpu_ms_per_update") is not None
            else ""
        )
        + f", busy {row['cpu_busy']:.2f}"
        for label, row in zip(labels, inbound["rows"], strict=True)
    )
    limits = f"{inbound['one_core_limit_updates_per_s']:.0f} updates/s on one core"
    if inbound.get("machine_limit_updates_per_s") is None:
        limits += " (the server's CPU included: it ran in the bot's process)"
    else:
        limits += (
            f", {inbound['machine_limit_updates_per_s']:.0f}/s on all {inbound['cores']} "
            "(shared with the server, none wasted)"
        )
    return [
        ("inbound", "CPU per update: the bot's process (the server's), busy share", spent, ""),
        (
            "inbound",
            "yousaid's CPU per update ÷ ceiling's / peer's (same subset)",
            f"{inbound['subset_cpu_vs_ceiling']:.2f} / {inbound['subset_cpu_vs_peer']:.2f}",
            "",
        ),
        (
            "inbound",
            "the most yousaid's CPU per update allows (whole burst), against 3 × peer",
            f"{limits}; 3 × peer is {inbound['three_times_peer_updates_per_s']:.0f}/s",
            "",
        ),
    ]


def _spread(inbound: dict[str, Any], key: str) -> str:
    """The spread of the paired subset ratios, e.g. " (subset: median of 3 runs, 0.51 -
    0.55)"; nothing for a single run (as every run before the seventh round was)."""
    ratios = inbound.get(key) or []
    if len(ratios) < 2:
        return ""
    return f" (subset: median of {len(ratios)} runs, {min(ratios):.2f} - {max(ratios):.2f})"


def job_rows(j: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Jobs queued in parts: how long each holds the lock (every update waits meanwhile)."""
    if "error" in j:
        return [("jobs", "run", j["error"], "")]
    region = f"{j['region_people']:,} people"
    table = [
        (
            "jobs",
            "a transaction writing one row (the baseline)",
            f"{j['commit_alone_s'] * 1000:.1f} ms",
            "",
        )
    ]
    for key, what, first_key in (
        ("round", f"check-in round, {region}", None),
        ("panel", f"panel invitations, {region}", "organiser_transaction_s"),
        (
            "update",
            f"update to the {j['raised_the_theme']:,} who raised its theme",
            "staff_transaction_s",
        ),
    ):
        job = j[key]
        first = f"staff member's transaction {job[first_key] * 1000:.0f} ms; " if first_key else ""
        table.append(
            (
                "jobs",
                what,
                f"{first}{job['jobs']} parts, longest {job['longest_s'] * 1000:.0f} ms, "
                f"mean {job['mean_s'] * 1000:.0f} ms, {job['total_s']:.1f} s in all",
                "",
            )
        )
    return table


def markdown(
    results: dict[str, dict[str, Any]], command: str, started: str, took: float, host: str
) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (`.venv/bin/python -m bench`); the figures below are from",
        "the last run. Speed is reported as ratios against baselines run in the same process",
        "run, because these machines are shared and noisy. The findings after the table are",
        "written by hand (bench/FINDINGS.md).",
        "",
        f"- Command: `{command}`",
        f"- Date: {started} (took {took / 60:.1f} min)",
        f"- Machine: {host}",
        "",
        "| benchmark | measure | result | target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(results)]
    lines += ["", "<details><summary>Raw figures (JSON)</summary>", "", "```json"]
    lines += [json.dumps(results, indent=2), "```", "", "</details>", ""]
    findings = HERE / "FINDINGS.md"
    if findings.exists():
        lines.append(findings.read_text())
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, to try it out")
    parser.add_argument("--only", help="comma-separated: " + ",".join(BENCHMARKS))
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument(
        "--render",
        action="store_true",
        help="only write RESULTS.md again from the last run's figures (after editing FINDINGS.md)",
    )
    args = parser.parse_args()
    figures = Path(args.out).with_suffix(".json")
    if args.render:
        last = json.loads(figures.read_text())
        Path(args.out).write_text(
            markdown(last["results"], last["command"], last["date"], last["took"], last["machine"])
        )
        return
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results[name] = run_one(name, args.quick, Path(tmp))
    took = time.perf_counter() - began
    table = rows(results)
    width = max(len(r[1]) for r in table) if table else 10
    print()
    for bench, measure, result, target in table:
        print(f"{bench:<10} {measure:<{width}}  {result}  {('target ' + target) if target else ''}")
    command = "make bench" if not args.quick else "python -m bench --quick"
    if args.only:
        command += f" (only {args.only})"
    Path(args.out).write_text(markdown(results, command, started, took, host))
    last = {"command": command, "date": started, "took": took, "machine": host}
    figures.write_text(json.dumps({**last, "results": results}, indent=2))
    print(f"\nwrote {args.out} ({took / 60:.1f} min)")


if __name__ == "__main__":
    main()

"""The weekly digest for managers: what a region's people say, never who said it.

`build_digests` turns the raw numbers of the national view and of each region
(storage/digest_data.py) into `Digest` trees, and decides for all of them at once which
figures are shown as "fewer than k" (bot/digest_disclosure.py): at once, because a region's
hidden figure could otherwise be recovered from the national view. Every figure is also
checked against the digests released before, read back from the store exactly as released,
so a trend or a total cannot be differenced with an earlier digest to reveal a few people.

A digest holds counts, means, rates and changes, each cell with the number of distinct
people it describes; never a pseudonym, a chat id or anything a person wrote. `to_markdown`,
`to_csv` and `to_json` (what is stored) give the same cells. Pure: no I/O.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.digest_disclosure import COUNT, MEAN, Figure, Release, Sum, hidden_figures
from bot.digest_figures import NATION, FigureModel, Plan, is_state, region_name
from storage.digest_data import ALL, NATIONAL, DigestData, LoopData

DEFAULT_K = 10
MIN_K = 5  # never publish a figure about fewer than five people, whatever is configured
FORMAT = 1  # of to_json


@dataclass(frozen=True)
class Cell:
    column: str
    figure: str  # the figure's name (bot/digest_figures.py): later digests are checked by it
    kind: str  # count (of people), mean, rate, change, or number (of things, not people)
    value: int | float | None  # None when suppressed
    people: int | None  # distinct people it describes; None when suppressed or read back
    suppressed: bool = False


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Digest:
    region: str  # a slug, or '' for the national view
    week: str
    k: int
    sections: tuple[Section, ...]
    sums: tuple[Sum, ...] = field(default=(), repr=False)  # how its figures add up, by name
    # Themes raised by k or more people over the trend weeks with no update yet (labels;
    # in the national view "theme (region)").
    waiting: tuple[str, ...] = ()

    def section(self, section_id: str) -> Section:
        return next(s for s in self.sections if s.id == section_id)

    def cells(self) -> Iterable[tuple[Section, Row, Cell]]:
        for section in self.sections:
            for row in section.rows:
                for cell in row.cells:
                    yield section, row, cell


def check_k(k: int) -> int:
    """k as given, when it is a whole number of at least MIN_K; ValueError otherwise."""
    if isinstance(k, bool) or not isinstance(k, int) or k < MIN_K:
        raise ValueError(f"k must be a whole number of at least {MIN_K}, not {k!r}")
    return k


def build_digest(
    data: DigestData,
    k: int = DEFAULT_K,
    released: Sequence[Digest] = (),
    themes: Sequence[tuple[str, str]] = (),
    zone: str = "Europe/London",
) -> Digest:
    """One digest on its own. Prefer build_digests with the national view and every region:
    only then are a region's hidden figures protected against the national ones."""
    return build_digests({data.region: data}, k, released, themes, zone)[data.region]


def build_digests(
    data: Mapping[str, DigestData],
    k: int = DEFAULT_K,
    released: Sequence[Digest] = (),
    themes: Sequence[tuple[str, str]] = (),
    zone: str = "Europe/London",
) -> dict[str, Digest]:
    """The digests of one week for every region in `data` ('' : the national view), with
    disclosure control over all of them and against every earlier release in `released`.
    `themes` are the taxonomy's (id, label) pairs: every theme gets a row, raised or not,
    because a missing row would say "nobody"."""
    check_k(k)
    weeks = {one.week for one in data.values()}
    if len(weeks) != 1:
        raise ValueError("the digests checked together must be of one week")
    week = weeks.pop()
    model = FigureModel(week, dict(themes), data)
    plans = {region: model.plans(region, one, zone) for region, one in data.items()}
    shown = {fid for plan in plans.values() for s in plan for r in s.rows for _, fid in r.cells}
    # The model makes every figure unshown: only those placed in a cell are copied.
    figures = {i: replace(f, shown=True) if i in shown else f for i, f in model.figures.items()}
    hidden = hidden_figures(figures, model.sums, k, [release_of(d) for d in released])
    # The sums each digest stores (by figure name): those its figures are in.
    named = [
        Sum(figures[s.total].series, tuple(figures[m].series for m in s.members), s.weights)
        for s in model.sums
    ]
    sums_of: dict[str, list[int]] = {}
    for number, one in enumerate(model.sums):
        for fid in {one.total, *one.members}:
            sums_of.setdefault(fid, []).append(number)
    labels = model.themes
    return {
        region: _with_loop(
            _digest(region, week, k, plan, figures, hidden, named, sums_of),
            data[region].loop,
            labels,
        )
        for region, plan in plans.items()
    }


# --- "You said, we did" and who is under-heard ------------------------------------------

NUMBER = "number"  # a count of things that are not people (updates, themes): never hidden
LOOP_ROWS = {
    "published_week": "Updates published this week",
    "published_trend": "Updates published, last 12 weeks",
    "raised": "Themes raised by at least k people, last 12 weeks",
    "answered": "Of those, themes with an update",
    "rate": "Closed-loop rate",
}
UNDERHEARD_COLUMNS = ("response rate", "overall")


def _with_loop(digest: Digest, loop: LoopData, themes: Mapping[str, str]) -> Digest:
    """The digest with its "you said, we did" section, the themes still waiting, and who
    is under-heard. None of these describes a few people: updates are staff's work, a
    theme counts only when k or more people raised it (so naming one waiting tells no one
    about a small group), and who is under-heard is read from published figures only."""
    k, week = digest.k, digest.week
    token = NATION if digest.region == NATIONAL else digest.region
    counted = [t for t in loop.raised if t.people >= k]
    values: dict[str, int | float] = {
        "published_week": loop.published_week,
        "published_trend": loop.published_trend,
        "raised": len(counted),
        "answered": sum(t.answered for t in counted),
    }
    if counted:
        values["rate"] = round(values["answered"] / len(counted), 3)
    rows: list[Row] = []
    for key, label in LOOP_ROWS.items():
        kind = "rate" if key == "rate" else NUMBER
        figure = f"l/{week}/{token}/{key}"
        cells = (Cell("number", figure, kind, values[key], None),) if key in values else ()
        rows.append(Row(key, label.replace(" k ", f" {k} "), cells))
    loop_section = Section("loop", "You said, we did", ("number",), tuple(rows))

    def name(t: str, region: str) -> str:
        label = themes.get(t, t)
        return f"{label} ({region_name(region)})" if digest.region == NATIONAL else label

    waiting = tuple(sorted(name(t.theme, t.region) for t in counted if not t.answered))
    return replace(
        digest,
        sections=(*digest.sections, loop_section, _underheard(digest)),
        waiting=waiting,
    )


def _underheard(digest: Digest) -> Section:
    """Languages (and regions, in the national view) whose published response rate this
    week is below the published overall rate."""
    rate = "response rate"

    def rate_of(row: Row) -> Cell | None:
        found = next((c for c in row.cells if c.column == rate), None)
        return found if found is not None and not found.suppressed else None

    checkins = digest.section("checkins")
    overall = next((rate_of(r) for r in checkins.rows if r.key == ALL), None)
    candidates = [r for r in checkins.rows if r.key != ALL]
    if digest.region == NATIONAL:
        candidates += list(digest.section("regions").rows)
    rows: list[Row] = []
    for row in candidates if overall is not None else ():
        mine = rate_of(row)
        if mine is not None and overall is not None and (mine.value or 0) < (overall.value or 0):
            rows.append(
                Row(
                    row.key,
                    row.label,
                    (replace(mine, column=rate), replace(overall, column="overall")),
                )
            )
    return Section(
        "underheard",
        "Who is under-heard this week (response rate below the overall rate)",
        UNDERHEARD_COLUMNS,
        tuple(rows),
    )


def release_of(digest: Digest) -> Release:
    """What a released digest told its readers, for checking later digests against it."""
    return Release({cell.figure: cell.value for _, _, cell in digest.cells()}, digest.sums)


def _digest(
    region: str,
    week: str,
    k: int,
    plans: list[Plan],
    figures: Mapping[str, Figure],
    hidden: Mapping[str, str],
    sums: Sequence[Sum],
    sums_of: Mapping[str, list[int]],
) -> Digest:
    sections: list[Section] = []
    order: dict[str, int] = {}
    for plan in plans:
        rows = [
            Row(r.key, r.label, tuple(_cell(c, fid, figures, hidden) for c, fid in r.cells))
            for r in plan.rows
        ]
        if plan.ranked:
            # Published figures by size, then the hidden ones by name: ranking hidden ones
            # by their true size would tell which is larger.
            order = order or {
                row.key: n
                for n, row in enumerate(
                    sorted(
                        rows[1:],
                        key=lambda r: (r.cells[0].suppressed, -(r.cells[0].value or 0), r.label),
                    )
                )
            }
            rows = [rows[0], *sorted(rows[1:], key=lambda r: order[r.key])]
        sections.append(Section(plan.id, plan.title, plan.columns, tuple(rows)))
    mine = {fid for plan in plans for r in plan.rows for _, fid in r.cells}
    linked = sorted({n for fid in mine for n in sums_of.get(fid, ())})
    return Digest(region, week, k, tuple(sections), tuple(sums[n] for n in linked))


def _cell(column: str, fid: str, figures: Mapping[str, Figure], hidden: Mapping[str, str]) -> Cell:
    f = figures[fid]
    kind = f.kind if f.kind in (COUNT, MEAN) else f.series.rsplit("/", 1)[1]
    if fid in hidden:
        return Cell(column, f.series, kind, None, None, True)
    if f.kind == COUNT:
        return Cell(column, f.series, kind, int(f.value), f.people)
    people = f.people if f.kind == MEAN else min(figures[d].people for d in f.depends)
    return Cell(column, f.series, kind, f.value, people)


# --- Output -----------------------------------------------------------------------------


def format_value(cell: Cell, k: int) -> str:
    """A cell as a reader sees it."""
    if cell.suppressed or cell.value is None:
        return f"fewer than {k}"
    if cell.kind in ("count", NUMBER):
        return str(int(cell.value))
    if cell.kind == "mean":
        return f"{cell.value:.2f}"
    if cell.kind == "rate":
        return f"{cell.value * 100:.1f}%"
    return f"{cell.value:+.2f}"


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


Quotes = Mapping[str, Sequence[str]]  # theme label -> consented, scrubbed quotes
QUOTES_TITLE = "In their own words"
WAITING_TITLE = "Themes still waiting for a response"


def to_markdown(digest: Digest, quotes: Quotes | None = None) -> str:
    k = digest.k
    lines = [
        f"# YouSaid weekly digest: {region_name(digest.region)}, {digest.week}",
        "",
        f'Figures about fewer than {k} people are shown as "fewer than {k}", and so are a few '
        "others that would let them be worked out. Nobody is named, and nothing anyone "
        "wrote is shown.",
    ]
    for section in digest.sections:
        lines += ["", f"## {_md(section.title)}", ""]
        lines.append("| | " + " | ".join(_md(c) for c in section.columns) + " |")
        lines.append("| --- |" + " ---: |" * len(section.columns))
        for row in section.rows:
            by_column = {cell.column: format_value(cell, k) for cell in row.cells}
            values = [by_column.get(column, "") for column in section.columns]
            lines.append(f"| {_md(row.label)} | " + " | ".join(values) + " |")
    lines += ["", f"## {WAITING_TITLE}", ""]
    lines += [f"- {_md(theme)}" for theme in digest.waiting] or ["None."]
    if quotes:
        lines += ["", f"## {QUOTES_TITLE}"]
        for theme, said in quotes.items():
            lines += ["", f"### {_md(theme)}", ""]
            lines += [f"> {_md(one)}" for one in said]
    return "\n".join(lines) + "\n"


def to_csv(digest: Digest, quotes: Quotes | None = None) -> str:
    """One line per cell: section, row, column, value; then the themes still waiting and
    the quotes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "row", "column", "value"])
    for section, row, cell in digest.cells():
        writer.writerow([section.title, row.label, cell.column, format_value(cell, digest.k)])
    for theme in digest.waiting:
        writer.writerow([WAITING_TITLE, _cell_text(theme), "status", "waiting"])
    for theme, said in (quotes or {}).items():
        for number, one in enumerate(said, start=1):
            writer.writerow([QUOTES_TITLE, _cell_text(theme), f"quote {number}", _cell_text(one)])
    return out.getvalue()


def _cell_text(text: str) -> str:
    """Text a spreadsheet will not take for a formula (a quote may start with '=')."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_json(digest: Digest) -> str:
    """Exactly what is released (no people counts, no hidden values, no quotes: a quote
    must go when its writer is forgotten, so it is read afresh each time), for the store, with
    the sums over panel figures: a later digest must not leave one of their hidden parts
    the only unknown. (A past week's figure once hidden stays hidden, so its sums are not
    needed again, and they would make up most of the text.)"""
    return json.dumps(
        {
            "format": FORMAT,
            "region": digest.region,
            "week": digest.week,
            "k": digest.k,
            "sections": [
                {
                    "id": s.id,
                    "title": s.title,
                    "columns": list(s.columns),
                    "rows": [
                        {
                            "key": r.key,
                            "label": r.label,
                            "cells": [
                                {"column": c.column, "figure": c.figure, "kind": c.kind}
                                | {"value": c.value}
                                for c in r.cells
                            ],
                        }
                        for r in s.rows
                    ],
                }
                for s in digest.sections
            ],
            "sums": [
                {"total": s.total, "members": list(s.members), "weights": s.weights}
                for s in digest.sums
                if any(is_state(name) for name in (s.total, *s.members))
            ],
            "waiting": list(digest.waiting),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def from_json(text: str) -> Digest:
    """A stored digest read back (cells without people counts)."""
    found: dict[str, Any] = json.loads(text)
    if found.get("format") != FORMAT:
        raise ValueError(f"unknown digest format {found.get('format')!r}")
    sections = tuple(
        Section(
            s["id"],
            s["title"],
            tuple(s["columns"]),
            tuple(
                Row(
                    r["key"],
                    r["label"],
                    tuple(
                        Cell(
                            c["column"],
                            c["figure"],
                            c["kind"],
                            c["value"],
                            None,
                            c["value"] is None,
                        )
                        for c in r["cells"]
                    ),
                )
                for r in s["rows"]
            ),
        )
        for s in found["sections"]
    )
    sums = tuple(
        Sum(s["total"], tuple(s["members"]), tuple(s["weights"]) if s["weights"] else None)
        for s in found["sums"]
    )
    waiting = tuple(found.get("waiting", ()))
    return Digest(found["region"], found["week"], int(found["k"]), sections, sums, waiting)

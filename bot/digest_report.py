"""The weekly digest as pictures: a PNG chart and a self-contained HTML report.

Managers read the digest on a phone in Telegram, and some print it for a meeting, so the
report is one HTML file with everything inside it (styles inline, the chart as a data: URI,
no fonts or scripts from elsewhere): it opens offline, leaks no request to a third party, and
looks the same wherever it is forwarded. Tables scroll sideways on a phone and wrap on paper.

Both are drawn only from what the digest releases. A suppressed cell carries no value, and
even if one did it would be ignored here: the chart leaves a gap for it and the report says
"fewer than k", exactly as bot/digest.py's Markdown and CSV do.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.digest import (
    QUOTES_TITLE,
    WAITING_TITLE,
    Cell,
    Digest,
    Quotes,
    Section,
    format_value,
)
from bot.digest_figures import PEOPLE, PRINCIPLE_NAMES, region_name
from storage.digest_data import PRINCIPLES, TREND_WEEKS

TEMPLATES = Path(__file__).parent / "templates"
TOP_THEMES = 5  # more lines than this are unreadable on a phone
CHART_SIZE = (9.0, 5.0)  # inches; at CHART_DPI: 900 x 500 pixels, small enough for Telegram
CHART_DPI = 100
_MARKERS = ("o", "s", "^", "D", "v")  # lines told apart without colour too
_LEGEND_CHARS = 30

Series = tuple[float | None, ...]  # one value per week; None: a gap (hidden or not released)
Weekly = dict[str, dict[str, float | None]]  # week -> name -> value (None: a gap)


@dataclass(frozen=True)
class ChartData:
    """What the chart draws, kept apart from the drawing so tests can check it."""

    weeks: tuple[str, ...]  # oldest first
    scores: Mapping[str, Series]  # principle's short name -> mean score per week
    themes: Mapping[str, Series]  # theme label -> distinct people per week, top themes first


def _value(cell: Cell | None) -> float | None:
    """A released value, or None: a suppressed cell is a gap whatever it carries."""
    if cell is None or cell.suppressed or cell.value is None:
        return None
    return float(cell.value)


def _section(digest: Digest, section_id: str) -> Section | None:
    return next((s for s in digest.sections if s.id == section_id), None)


def _by_column(cells: Sequence[Cell]) -> dict[str, Cell]:
    return {cell.column: cell for cell in cells}


def _weekly(digest: Digest) -> tuple[Weekly, Weekly]:
    """(scores, themes) by week -> name -> value, from the digest's 12-week trend, or from
    its own week's figures when it has no trend (a digest stored in an older shape)."""
    scores: Weekly = {}
    themes: Weekly = {}
    trend = _section(digest, "scores_trend")
    if trend is not None:
        for row in trend.rows:
            cells = _by_column(row.cells)
            scores[row.key] = {p: _value(cells.get(f"{p} mean")) for p in PRINCIPLES}
    elif (now := _section(digest, "scores")) is not None:
        means = {row.key: _value(_by_column(row.cells).get("mean")) for row in now.rows}
        scores[digest.week] = {p: means.get(p) for p in PRINCIPLES}
    trend = _section(digest, "themes_trend")
    if trend is not None:
        for row in trend.rows:
            if row.key != PEOPLE:
                for week, cell in _by_column(row.cells).items():
                    themes.setdefault(week, {})[row.label] = _value(cell)
    elif (now := _section(digest, "themes")) is not None:
        themes[digest.week] = {
            row.label: _value(_by_column(row.cells).get("people"))
            for row in now.rows
            if row.key != PEOPLE
        }
    return scores, themes


def chart_data(digest: Digest, previous: Sequence[Digest] = ()) -> ChartData:
    """The last TREND_WEEKS weeks of mean scores and top themes.

    The digest's own figures win for every week it covers, gaps included: its suppression
    was decided against everything released before, so a value an older digest showed for
    that week is not brought back. `previous` (earlier released digests of the same region)
    only fills weeks the digest does not cover at all."""
    scores: Weekly = {}
    themes: Weekly = {}
    earlier = sorted(
        (d for d in previous if d.region == digest.region and d.week < digest.week),
        key=lambda d: d.week,
    )
    for source in (*earlier, digest):
        weekly_scores, weekly_themes = _weekly(source)
        scores.update(weekly_scores)  # a whole week at a time: its gaps replace values
        themes.update(weekly_themes)
    weeks = tuple(sorted(w for w in {*scores, *themes} if w <= digest.week))[-TREND_WEEKS:]
    short = {p: PRINCIPLE_NAMES.get(p, p).split(":")[0] for p in PRINCIPLES}
    score_series = {short[p]: tuple(scores.get(w, {}).get(p) for w in weeks) for p in PRINCIPLES}
    labels = sorted({label for w in weeks for label in themes.get(w, {})})
    theme_series = {label: tuple(themes.get(w, {}).get(label) for w in weeks) for label in labels}
    return ChartData(weeks, score_series, _top(theme_series))


def _top(series: Mapping[str, Series]) -> dict[str, Series]:
    """The themes raised by most people, judged on released values only (each theme's
    latest released figure, then its total over the weeks): ranking on hidden values would
    hint at them."""

    def rank(item: tuple[str, Series]) -> tuple[float, float, str]:
        label, values = item
        shown = [v for v in values if v is not None]
        latest = next((v for v in reversed(values) if v is not None), 0.0)
        return (-latest, -sum(shown), label)

    released = [(label, v) for label, v in series.items() if any(x is not None for x in v)]
    return dict(sorted(released, key=rank)[:TOP_THEMES])


def _short(label: str) -> str:
    return label if len(label) <= _LEGEND_CHARS else label[: _LEGEND_CHARS - 1].rstrip() + "…"


def render_chart(digest: Digest, previous: Sequence[Digest] = ()) -> bytes:
    """The chart as PNG bytes: mean scores per principle (left) and the top themes by
    distinct people (right), week by week. Hidden figures are gaps in the lines."""
    # Imported here: matplotlib costs the bot's start-up half a second it rarely needs.
    # The object API with the Agg canvas needs no display and touches no global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    data = chart_data(digest, previous)
    fig = Figure(figsize=CHART_SIZE, dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{region_name(digest.region)}: last {len(data.weeks)} weeks to {digest.week}")
    left, right = fig.subplots(1, 2)
    x = list(range(len(data.weeks)))
    ticks = [w.rsplit("-", 1)[-1] for w in data.weeks]
    panels = (
        (left, data.scores, "Mean score (1 to 5)"),
        (right, data.themes, "Top themes (people)"),
    )
    for ax, series, title in panels:
        ax.set_title(title, fontsize=11)
        ax.set_xticks(x, ticks, fontsize=7)
        ax.set_xlim(-0.5, max(len(x) - 0.5, 0.5))
        ax.grid(axis="y", alpha=0.3)
        for n, (label, values) in enumerate(series.items()):
            y = [math.nan if v is None else v for v in values]  # NaN: matplotlib leaves a gap
            ax.plot(x, y, marker=_MARKERS[n % len(_MARKERS)], markersize=4, label=_short(label))
        if any(v is not None for values in series.values() for v in values):
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8,
                      frameon=False)  # fmt: skip
        else:
            empty = f"Nothing to show: every figure is about\nfewer than {digest.k} people, or "
            ax.text(0.5, 0.5, empty + "would reveal one", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")  # fmt: skip
    left.set_ylim(1, 5)
    right.set_ylim(bottom=0)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    # supxlabel, not text: the constrained layout makes room for it below the legends.
    fig.supxlabel(f"A gap: a figure about fewer than {digest.k} people, or one that would let "
                  "such a figure be worked out.", fontsize=8, color="0.3")  # fmt: skip
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=CHART_DPI, metadata={"Software": None})
    return out.getvalue()


# --- The HTML report ---------------------------------------------------------------------


@dataclass(frozen=True)
class _CellView:
    text: str
    fewer: bool  # shown as "fewer than k"


@dataclass(frozen=True)
class _RowView:
    label: str
    cells: tuple[_CellView, ...]  # one per column; text '' where the row has no such cell


@dataclass(frozen=True)
class _SectionView:
    anchor: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[_RowView, ...]


def _sections(digest: Digest) -> list[_SectionView]:
    views = []
    for section in digest.sections:
        rows = []
        for row in section.rows:
            cells = _by_column(row.cells)
            rows.append(
                _RowView(
                    row.label,
                    tuple(
                        _CellView(format_value(cells[c], digest.k), _value(cells[c]) is None)
                        if c in cells
                        else _CellView("", False)
                        for c in section.columns
                    ),
                )
            )
        views.append(_SectionView(f"s-{section.id}", section.title, section.columns, tuple(rows)))
    return views


_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,  # labels include panel titles typed by staff
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def chart_alt(digest: Digest, region: str) -> str:
    """The chart's alt text: what it shows, for a screen reader (the figures are in the
    tables below it)."""
    return (
        f"Chart for {region}, the {TREND_WEEKS} weeks to {digest.week}: the mean score of each "
        "procedural-justice principle (voice, respect, neutrality, trust) from 1 to 5, and the "
        f"{TOP_THEMES} themes raised by most people, week by week. Weeks with figures about "
        f"fewer than {digest.k} people are gaps. Every figure is in the tables below."
    )


def render_html(
    digest: Digest, chart_png: bytes | None, region_name: str, quotes: Quotes | None = None
) -> str:
    """The whole digest as one HTML page: every section and row, hidden cells as
    "fewer than k", the themes still waiting, the quotes, and the chart (when given)
    embedded as a data: URI."""
    chart = None
    if chart_png is not None:
        chart = "data:image/png;base64," + base64.b64encode(chart_png).decode("ascii")
    return _ENV.get_template("digest.html.j2").render(
        region=region_name,
        week=digest.week,
        k=digest.k,
        sections=_sections(digest),
        chart=chart,
        chart_alt=chart_alt(digest, region_name),
        waiting=digest.waiting,
        waiting_title=WAITING_TITLE,
        quotes=[(theme, list(said)) for theme, said in (quotes or {}).items()],
        quotes_title=QUOTES_TITLE,
    )


def report_files(
    digest: Digest, previous: Sequence[Digest], region_name: str, quotes: Quotes | None = None
) -> tuple[bytes, str]:
    """(chart PNG, HTML report with that chart inside), for sending both to managers."""
    png = render_chart(digest, previous)
    return png, render_html(digest, png, region_name, quotes)

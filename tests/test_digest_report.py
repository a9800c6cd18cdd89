"""The digest's chart and HTML report (bot/digest_report.py): the report holds the whole
digest and nothing hidden, the chart draws hidden figures as gaps, and the page renders in
headless Chromium (Debian's `chromium`, installed by `make test`) with the chart loaded.

Everyone here is invented (tests/digest_synthetic.py).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import shutil
import subprocess
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from bot.digest import (
    QUOTES_TITLE,
    WAITING_TITLE,
    Cell,
    Digest,
    Row,
    Section,
    build_digests,
    format_value,
    from_json,
    to_json,
)
from bot.digest_figures import region_name
from bot.digest_report import (
    TOP_THEMES,
    ChartData,
    chart_data,
    render_chart,
    render_html,
    report_files,
)
from bot.settings import PROJECT_ROOT
from bot.themes import load_taxonomy
from storage.digest_data import NATIONAL, TREND_WEEKS
from tests.digest_synthetic import ZONE, expected, generate

K = 5
WEEK, WEEK_BEFORE = "2026-W47", "2026-W46"
REGIONS = ("london", "wales", "north-east")
THEMES = [(t.id, t.label) for t in load_taxonomy(PROJECT_ROOT / "dialogues" / "themes.yaml").themes]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PERSONAL = re.compile(r"p-\d{4}|10000\d{3}")  # the synthetic pseudonyms and chat ids
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
CHROMIUM_TIMEOUT = 120


@pytest.fixture(scope="module")
def releases() -> tuple[dict[str, Digest], dict[str, Digest]]:
    """(last week's released digests, this week's), checked against last week's as the
    weekly job does."""
    world = asyncio.run(generate(20261123, None, regions=REGIONS, people_per_region=70))
    released: dict[str, Digest] = {}
    for week in (WEEK_BEFORE, WEEK):
        refs = {r: expected(world, r, week) for r in (NATIONAL, *REGIONS)}
        built = build_digests(refs, K, list(released.values()), THEMES, ZONE)
        before, released = released, {r: from_json(to_json(d)) for r, d in built.items()}
    return before, released


@pytest.fixture(scope="module")
def digests(releases: tuple[dict[str, Digest], dict[str, Digest]]) -> dict[str, Digest]:
    return releases[1]


class Tables(HTMLParser):
    """Each table of the page under the <h2> before it: (section, row, column) -> text, and
    whether the cell was marked as hidden."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], tuple[str, bool]] = {}
        self.titles: list[str] = []
        self._section, self._row, self._text = "", list[tuple[str, bool]](), ""
        self._columns: list[str] = []
        self._in: str | None = None
        self._fewer = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "th", "td"):
            self._in, self._text = tag, ""
            self._fewer = ("class", "fewer") in attrs
        elif tag == "tr":
            self._row = []

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        text = " ".join(self._text.split())
        if tag == "h2":
            self._section, self._columns = text, []
            self.titles.append(text)
        elif tag in ("th", "td"):
            self._row.append((text, self._fewer))
        elif tag == "tr" and self._row:
            if not self._columns:
                self._columns = [text for text, _ in self._row[1:]]
            else:
                label = self._row[0][0]
                for column, cell in zip(self._columns, self._row[1:], strict=True):
                    if cell[0]:
                        self.cells[(self._section, label, column)] = cell
        if tag == self._in:
            self._in = None


def tables_of(html: str) -> Tables:
    parser = Tables()
    parser.feed(html)
    return parser


def shown(digest: Digest) -> dict[tuple[str, str, str], tuple[str, bool]]:
    """What a reader must see in each cell: format_value, as in the Markdown and the CSV."""
    return {
        (s.title, r.label, c.column): (format_value(c, digest.k), c.suppressed)
        for s, r, c in digest.cells()
    }


# --- The HTML report -----------------------------------------------------------------------


@pytest.mark.parametrize("region", [NATIONAL, *REGIONS])
def test_the_report_holds_the_whole_digest_and_nothing_hidden(
    digests: dict[str, Digest], region: str
) -> None:
    digest = digests[region]
    png = render_chart(digest)
    quotes = {"Housing": ["The hostel is far from <b>everything</b> & the bus is late."]}
    html = render_html(digest, png, region_name(region), quotes)
    tables = tables_of(html)
    assert tables.titles == [s.title for s in digest.sections] + [WAITING_TITLE, QUOTES_TITLE]
    # The themes still waiting for an update, and the quotes as text (escaped).
    waiting = re.search(r'id="s-waiting-title">.*?</section>', html, re.S)
    assert waiting is not None
    assert re.findall(r"<li>(.*?)</li>", waiting.group()) == [escape(t) for t in digest.waiting]
    assert (
        "<blockquote>The hostel is far from &lt;b&gt;everything&lt;/b&gt; &amp; the bus is "
        "late.</blockquote>" in html
    )
    # Every cell of every row, as format_value says: a hidden one as "fewer than k", marked.
    assert tables.cells == shown(digest)
    hidden = [cell for cell in tables.cells.values() if cell[1]]
    assert hidden and all(text == f"fewer than {K}" for text, _ in hidden)
    assert any(not fewer for _, fewer in tables.cells.values())
    # The chart is inside, as the very PNG, with alt text.
    (encoded,) = DATA_URI.findall(html)
    assert base64.b64decode(encoded) == png
    assert re.search(r'<img class="chart" src="data:[^"]+" alt="[^"]{40,}"', html)
    text = DATA_URI.sub("", html)
    assert not PERSONAL.search(text)
    # Self-contained, for a phone and for paper.
    assert not re.search(r"<script|<link|<iframe|@import|(src|href)=\"(https?:)?//", text)
    assert not re.search(r"url\(", text)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert "@media print" in text and "overflow-x: auto" in text
    assert text.count('<div class="scroll"') == len(digest.sections)


def test_hidden_values_never_reach_the_report_or_the_chart() -> None:
    """Even a suppressed cell that carried its value (it never should) shows none of it."""
    secret_mean, secret_people = 4.44, 777
    weeks = ("2026-W45", "2026-W46", "2026-W47")
    mean = [Cell("voice mean", f"s/{w}/x/voice/mean", "mean", 3.5, 20) for w in weeks]
    mean[1] = Cell("voice mean", "s/2026-W46/x/voice/mean", "mean", secret_mean, 3, True)
    themes = [Cell(w, f"t/{w}/x/housing", "count", 12, 12) for w in weeks]
    themes[2] = Cell(WEEK, "t/2026-W47/x/housing", "count", secret_people, 2, True)
    label = '<script>alert("x")</script> & "panel"'
    digest = Digest(
        "london",
        WEEK,
        K,
        (
            Section("panels", "Panels", ("invited",), (Row("p1", label, (themes[0],)),)),
            Section("scores_trend", "Mean scores", ("voice mean",),
                    tuple(Row(w, w, (c,)) for w, c in zip(weeks, mean, strict=True))),
            Section("themes_trend", "Themes", weeks, (Row("housing", "Housing", tuple(themes)),)),
        ),
    )  # fmt: skip
    data = chart_data(digest)
    assert data.weeks == weeks
    assert data.scores["Voice"] == (3.5, None, 3.5)
    assert data.themes == {"Housing": (12.0, 12.0, None)}
    html = DATA_URI.sub("", render_html(digest, render_chart(digest), "London"))
    assert "4.44" not in html and "777" not in html  # the chart's base64 aside
    assert html.count(f'<td class="fewer">fewer than {K}</td>') == 2
    assert label not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp;" in html
    assert "<img" not in render_html(digest, None, "London")  # no chart, no broken image


# --- The chart -------------------------------------------------------------------------------


def test_the_chart_is_a_small_png_with_something_drawn(digests: dict[str, Digest]) -> None:
    for digest in digests.values():
        png = render_chart(digest)
        assert png.startswith(PNG_SIGNATURE)
        assert 5_000 < len(png) < 500_000
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (900, 500)
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50


def _trend(digest: Digest, section: str, row: str, column: str) -> float | None:
    found = next(r for r in digest.section(section).rows if r.key == row)
    cell = next(c for c in found.cells if c.column == column)
    return None if cell.suppressed or cell.value is None else float(cell.value)


def test_the_chart_draws_released_figures_and_gaps(
    releases: tuple[dict[str, Digest], dict[str, Digest]],
) -> None:
    before, now = releases
    for region, digest in now.items():
        data: ChartData = chart_data(digest, [before[region]])
        trend = digest.section("scores_trend")
        assert data.weeks == tuple(r.key for r in trend.rows) and len(data.weeks) == TREND_WEEKS
        # The digest's own cells win for every week it covers, gaps included.
        for short, principle in zip(data.scores, ("voice", "respect", "neutrality", "trust"),
                                    strict=True):  # fmt: skip
            assert data.scores[short] == tuple(
                _trend(digest, "scores_trend", w, f"{principle} mean") for w in data.weeks
            )
        assert len(data.themes) <= TOP_THEMES
        labels = {r.label: r.key for r in digest.section("themes_trend").rows}
        for label, values in data.themes.items():
            assert any(v is not None for v in values)
            key = labels[label]
            assert values == tuple(_trend(digest, "themes_trend", key, w) for w in data.weeks)
    national = chart_data(now[NATIONAL])
    assert any(v is not None for values in national.scores.values() for v in values)
    assert any(v is None for values in national.scores.values() for v in values)


def test_earlier_digests_fill_only_weeks_the_digest_lacks(
    releases: tuple[dict[str, Digest], dict[str, Digest]],
) -> None:
    """A digest without a trend (an older stored shape) is drawn from earlier releases, and
    its own week from its own figures."""
    before, now = releases
    digest = now[NATIONAL]
    bare = Digest(
        digest.region,
        digest.week,
        digest.k,
        tuple(s for s in digest.sections if not s.id.endswith("_trend")),
    )
    data = chart_data(bare, [before[NATIONAL], now["london"]])  # another region's: ignored
    previous = chart_data(before[NATIONAL])
    assert data.weeks == (*previous.weeks[1:], WEEK)
    for short, values in data.scores.items():
        assert values[:-1] == previous.scores[short][1:]
    means = {r.key: {c.column: c for c in r.cells}["mean"] for r in digest.section("scores").rows}
    assert data.scores["Voice"][-1] == (None if means["voice"].suppressed else means["voice"].value)


def test_report_files_returns_the_chart_and_the_page_with_it(digests: dict[str, Digest]) -> None:
    png, html = report_files(digests["wales"], (), "Wales")
    assert png.startswith(PNG_SIGNATURE)
    assert base64.b64decode(DATA_URI.findall(html)[0]) == png
    assert "<h1>YouSaid weekly digest: Wales, 2026-W47</h1>" in html


# --- Headless Chromium -----------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (make test installs Debian's chromium package)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; under CI=true this test may not skip")
        pytest.skip(reason)
    return found


def _run_chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium headless, in the mode this version has: `--headless` (the new mode since
    Chromium 132), else `--headless=new`."""
    failed = ""
    for mode in ("--headless", "--headless=new"):
        result = subprocess.run(
            [_chromium(), mode, "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return result
        failed += f"{mode}: exit {result.returncode}\n{result.stderr[-2000:]}\n"
    pytest.fail("chromium failed:\n" + failed)


def test_the_report_renders_in_headless_chromium(
    digests: dict[str, Digest], tmp_path: Path
) -> None:
    _chromium()
    digest = digests[NATIONAL]
    png, html = report_files(digest, (), "England and Wales")
    page = tmp_path / "report.html"
    page.write_text(html, "utf-8")
    shot = tmp_path / "shot.png"
    _run_chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=414,2000",
                  page.as_uri())  # fmt: skip
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (414, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 100, "the screenshot is (nearly) one flat colour"
    # The chart loads: a copy of the page reports the image's decoded size in its title, and
    # whether the page itself is wider than the phone (the tables must scroll, not the page).
    probe = tmp_path / "probe.html"
    script = (
        "<script>addEventListener('load', () => { const i = document.querySelector('img.chart');"
        " document.title = 'chart:' + i.naturalWidth + 'x' + i.naturalHeight + ' overflow:'"
        " + (document.documentElement.scrollWidth > innerWidth); });</script></body>"
    )
    probe.write_text(html.replace("</body>", script), "utf-8")
    flags = ("--window-size=414,2000", "--virtual-time-budget=5000", "--dump-dom")
    dom = _run_chromium(tmp_path / "profile", *flags, probe.as_uri()).stdout
    title = re.search(r"<title>chart:(\d+)x(\d+) overflow:(\w+)</title>", dom)
    assert title is not None, dom[:2000]
    with Image.open(io.BytesIO(png)) as chart:
        assert (int(title[1]), int(title[2])) == chart.size  # naturalWidth > 0: it loaded
    assert title[3] == "false"

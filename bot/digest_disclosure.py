"""Disclosure control for the weekly digests: which figures may be published.

Managers see themes, not people: no released figure may describe fewer than k people, and
no figure shown as "fewer than k" may be worked out from what is released. Hidden are:

- primary: a figure about fewer than k distinct people (a mean: fewer than k scored);
- (a) and (c), subtraction: whatever the released figures and the sums linking them (parts
  of a total; languages of a region; regions of the national view) would pin down. This is
  linear algebra over every sum at once, so it catches nested totals and a figure recovered
  through two or three sums, not only "a total minus its other parts". Also hidden: enough
  to keep the hidden parts of a published total together at k or more, and to leave a
  hidden score bucket more than one whole-number value when a mean and its n are out (a
  mean gives away its sum of scores);
- (b), differencing with what was released before (read from the store, never
  recomputed): a figure whose change since any released value is 1..k-1; a mean that moved
  while fewer than k scores came or went; a past week's figure that was hidden before (its
  hidden value is not stored, so publishing it could complete an old subtraction); a total
  whose published parts' remainder moved by 1..k-1; and a figure that would leave an
  earlier released group with a single unknown part.

A secondary suppression takes the smallest published part of the sum at stake, the total
only when no part can go. Hiding only ever adds, so the loop ends. The parts no digest shows
(those who did not start, people with no region...) count in the sums without ever being
published, and only a part of 1..k-1 people must not be worked out. People with no region
are taken as known when there are none (the regions then add up to the national figure),
and so are the zeros of a region with nobody in it at all (Figure.guessable).

Known gaps: the linear algebra ignores that counts are whole and never negative (except for
score buckets, above); a panel's figures change every week, and differencing two weeks is
checked figure by figure and total by total, not through every combination of sums.

Pure: no I/O. bot/digest_figures.py builds the figures and sums.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

# Kinds of figure. Counts and means are shown and describe people; a rate or a change is
# worked out from shown figures and is shown only with them; parts are never shown; a
# score sum is what a mean gives away (mean x n), never shown itself.
COUNT, MEAN, DERIVED, PART, SCORE_SUM = "count", "mean", "derived", "part", "score_sum"
Coefficient = int | Fraction


@dataclass(frozen=True)
class Figure:
    id: str  # unique among the figures checked together
    series: str  # what it is compared with in earlier releases
    value: float
    people: int  # distinct people it describes (a part: its value)
    kind: str = COUNT
    shown: bool = True  # appears in a digest being released
    stable: bool = True  # describes a past week, not a state that keeps changing
    depends: tuple[str, ...] = ()  # shown only when these are (a mean: its n first)
    reveals: str | None = None  # a mean: the score sum it gives away
    guessable: bool = False  # a part a reader may take to be zero (people with no region)


@dataclass(frozen=True)
class Sum:
    """total = sum(weight * member). Published sums are structure, known to any reader."""

    total: str
    members: tuple[str, ...]
    weights: tuple[int, ...] | None = None  # None: every member counts once

    def coefficients(self) -> dict[str, Coefficient]:
        found: dict[str, Coefficient] = {self.total: -1}
        for member, weight in zip(
            self.members, self.weights or [1] * len(self.members), strict=True
        ):
            found[member] = found.get(member, 0) + weight
        return found


@dataclass(frozen=True)
class Release:
    """An earlier released digest, as read back: series -> released value (None: shown as
    fewer than k), and its sums by series."""

    values: Mapping[str, float | None]
    sums: tuple[Sum, ...]


# A figure _protect may hide: (is the sum's total, people, id), the smallest first.
_Candidate = tuple[bool, int, str]
_SumView = tuple[_Candidate | None, tuple[str, ...]]


def hidden_figures(
    figures: Mapping[str, Figure], sums: Sequence[Sum], k: int, released: Sequence[Release]
) -> dict[str, str]:
    """The shown figures that must be shown as "fewer than k": id -> the rule that hid it."""
    control = _Control(figures, sums, k, released)
    control.run()
    return control.reasons


class _Control:
    def __init__(
        self,
        figures: Mapping[str, Figure],
        sums: Sequence[Sum],
        k: int,
        released: Sequence[Release],
    ) -> None:
        self.figures, self.k, self.released = figures, k, released
        self.sums = [s for s in sums if all(v in figures for v in (s.total, *s.members))]
        # The sums fall apart into independent groups (no figure in two groups): what one
        # group's equations pin down depends only on which of its figures are unknown, so
        # each group is solved again only when that changes (the audit runs several times).
        self._coefficients = [one.coefficients() for one in self.sums]
        self._groups = _groups(self._coefficients)
        self._solved: dict[tuple[int, frozenset[str]], set[str]] = {}
        # series -> the releases that showed it (their positions in `released`)
        self.shown_in: dict[str, list[int]] = {}
        for number, release in enumerate(released):
            for series in release.values:
                self.shown_in.setdefault(series, []).append(number)
        self.sums_of: dict[str, list[int]] = {}
        for number, one in enumerate(self.sums):
            for var in {one.total, *one.members}:
                self.sums_of.setdefault(var, []).append(number)
        # members -> the total of the plain sum over them (a distribution's n)
        self.plain = {s.members: s.total for s in self.sums if s.weights is None}
        # The sums each rule looks at, picked once (every round goes through them again).
        self.weighted = [(n, s) for n, s in enumerate(self.sums) if s.weights is not None]
        self.counted = [(n, s) for n, s in enumerate(self.sums) if self._counted(s)]
        # A reader may well guess that nobody is without a region: when so, the regions add
        # up to the national figure, and that is taken as known.
        self.zero_parts = {f.id for f in figures.values() if f.guessable and f.value == 0}
        self.reasons: dict[str, str] = {}  # figure id -> the rule that hid it (for tests)
        self.revealer = {f.reveals: f.id for f in figures.values() if f.reveals}
        self.published = {
            f.id for f in figures.values() if f.shown and f.kind not in (PART, SCORE_SUM)
        }
        # Known to a reader from an earlier release, whatever is decided today: a past
        # week's figure released with the value it has now (for a mean, with its n too). A
        # changed value is news, and a panel's figure is a new value each week: what a
        # change may reveal is checked by the rules of (b).
        self.known_before = {
            self._var(f)
            for f in figures.values()
            if f.stable and all(self._as_released(i) for i in (f.id, *self._n_of(f)))
        }

    def _n_of(self, f: Figure) -> tuple[str, ...]:
        return f.depends[:1] if f.kind == MEAN else ()

    def _history(self, series: str) -> list[float | None]:
        """The values `series` was released with (None: shown as fewer than k)."""
        return [self.released[n].values[series] for n in self.shown_in.get(series, ())]

    def _as_released(self, figure: str) -> bool:
        f = self.figures[figure]
        return f.value in self._history(f.series)

    def run(self) -> None:
        for f in self.figures.values():
            if f.id in self.published and self._primary_or_history(f):
                self._hide([f.id], "primary or earlier release")
        while True:
            before = len(self.published)
            self._dependencies()
            self._hide(self._audit(), "subtraction")
            self._hide(self._moved_residuals(), "moved remainder")
            self._hide(self._completed_groups(), "completes an earlier group")
            if len(self.published) == before:
                break

    # --- rules on one figure ------------------------------------------------------------

    def _primary_or_history(self, f: Figure) -> bool:
        if f.kind == COUNT and f.people < self.k:
            return True
        if f.kind == MEAN and self.figures[f.depends[0]].people < self.k:
            return True
        for number in self.shown_in.get(f.series, ()):
            release = self.released[number]
            before = release.values[f.series]
            if before is None:
                if f.stable:
                    return True
            elif f.kind == COUNT and 0 < abs(f.value - before) < self.k:
                return True
            elif f.kind == MEAN and f.value != before:
                n = self.figures[f.depends[0]]
                n_before = release.values.get(n.series)
                if n_before is None or abs(n.value - n_before) < self.k:
                    return True
        return False

    def _dependencies(self) -> None:
        changed = True
        while changed:
            changed = False
            for f in self.figures.values():
                if f.id in self.published and any(d not in self.published for d in f.depends):
                    self._hide([f.id], "depends on a hidden figure")
                    changed = True

    def _hide(self, ids: Iterable[str], why: str) -> None:
        for figure_id in ids:
            if figure_id in self.published:
                self.published.discard(figure_id)
                self.reasons[figure_id] = why

    # --- (a) and (c): what the released figures and the sums pin down ---------------------

    def _var(self, f: Figure) -> str:
        return f.reveals or f.id

    def _known(self) -> set[str]:
        published = {self._var(self.figures[i]) for i in self.published}
        return published | self.known_before | self.zero_parts

    def _counted(self, one: Sum) -> bool:
        """A plain sum of counts (not of scores): its hidden remainder counts people."""
        return one.weights is None and self.figures[one.total].kind in (COUNT, PART)

    def _small(self, var: str, value: float) -> bool:
        f = self.figures[var]
        if f.kind == PART:
            return 0 < value < self.k
        return f.kind == COUNT and f.people < self.k

    def _audit(self) -> set[str]:
        known = self._known()
        determined: set[str] = set()
        for number, (variables, members) in enumerate(self._groups):
            unknown = frozenset(variables - known)
            solved = self._solved.get((number, unknown))
            if solved is None:
                solved = _determined(
                    {v: c for v, c in self._coefficients[i].items() if v in unknown}
                    for i in members
                )
                self._solved[(number, unknown)] = solved
            determined |= solved
        hide: set[str] = set()
        known_before = known - determined  # (worked out once, not for every exposed figure)
        known |= determined
        # The sums as _protect sees them, worked out once per round for each set of known
        # figures: many exposed figures share their sums.
        views_before: dict[int, _SumView] = {}
        views: dict[int, _SumView] = {}
        for var in sorted(determined):
            if self._exposed(var, known):
                hide |= self._protect([var], known_before, views_before)
        for number, one in self.weighted:
            if one.total in known:
                hide |= self._pinned_by_mean(number, one, known, views)
        for number, one in self.counted:
            if one.total not in known:
                continue
            hidden = [m for m in one.members if m not in known]
            residual = sum(self.figures[m].value for m in hidden)
            shown = any(self.figures[m].kind != PART for m in hidden)
            if hidden and residual < self.k and (residual > 0 or shown):
                hide |= self._protect(hidden, known, views, number)
        return hide

    def _exposed(self, var: str, known: set[str]) -> bool:
        """Whether working `var` out exactly gives something away: a figure shown as
        "fewer than k" (that must never be undone, whatever hid it), a hidden mean (its sum
        of scores, with its n), or any other count of 1..k-1 people."""
        f = self.figures[var]
        if f.kind == SCORE_SUM:
            mean = self.revealer.get(var)
            return mean is not None and self.figures[mean].depends[0] in known
        return f.shown or self._small(var, f.value)

    def _pinned_by_mean(
        self, number: int, one: Sum, known: set[str], views: dict[int, _SumView]
    ) -> set[str]:
        """A mean with its n tells the sum of the hidden scores as well as their number; a
        few hidden buckets can then have only one whole-number solution. Linear algebra
        misses this (it allows negative and fractional counts), so it is checked here."""
        plain = self.plain.get(one.members)
        hidden = [m for m in one.members if m not in known]
        if plain is None or plain not in known or len(hidden) < 2:
            return set()
        weights = dict(zip(one.members, one.weights or (), strict=True))
        items = tuple((weights[m], int(self.figures[m].value)) for m in hidden)
        for member, value in zip(hidden, _pinned(items), strict=True):
            if value is not None and self._exposed(member, known):
                return self._protect([member], known, views, number)
        return set()

    def _protect(
        self,
        start: list[str],
        known: set[str],
        views: dict[int, _SumView],
        first: int | None = None,
    ) -> set[str]:
        """One figure to hide so that `start` is no longer pinned down: the smallest
        published part of a sum it is in (the total only when no part can be), looking
        further through hidden figures when its own sums offer none. Nothing when every
        figure involved was released before: that cannot be undone. `views`: the sums
        seen so far with this `known` in this round (see _view)."""
        frontier, seen_vars, seen_sums = list(start), set(start), set[int]()
        while frontier:
            if first is not None:
                numbers = [first]
            else:
                numbers = sorted({n for v in frontier for n in self.sums_of.get(v, [])})
            best: _Candidate | None = None
            found: list[str] = []
            for number in numbers:
                if number in seen_sums:
                    continue
                seen_sums.add(number)
                view = views.get(number)
                if view is None:
                    view = views[number] = self._view(self.sums[number], known)
                candidate, unknown = view
                if candidate is not None and (best is None or candidate < best):
                    best = candidate
                for var in unknown:
                    if var not in seen_vars:
                        seen_vars.add(var)
                        found.append(var)
            if best is not None:
                return {best[2]}
            frontier = found if first is None else [*start, *found]
            first = None
        return set()

    def _view(self, one: Sum, known: set[str]) -> _SumView:
        """A sum as _protect sees it: the figure it would hide (a part before the total,
        then the fewest people), if any may be hidden, and its unknown figures. Neither
        changes within a round: what is published and known changes between rounds."""
        candidates: list[_Candidate] = []
        unknown: list[str] = []
        for position, var in enumerate((one.total, *one.members)):
            figure = self._publisher(var)
            if figure is not None and var not in self.known_before:
                candidates.append((position == 0, self.figures[figure].people, figure))
            elif var not in known:
                unknown.append(var)
        return min(candidates, default=None), tuple(unknown)

    def _publisher(self, var: str) -> str | None:
        """The published figure that makes `var` known today, if any."""
        if var in self.published:
            return var
        mean = self.revealer.get(var)
        return mean if mean in self.published else None

    # --- (b): differencing with earlier releases -------------------------------------------

    def _moved_residuals(self) -> set[str]:
        """A total minus its published parts that moved by 1..k-1 since a release."""
        hide: set[str] = set()
        for _, one in self.counted:
            if one.total not in self.published:
                continue
            total = self.figures[one.total]
            parts = [self.figures[m] for m in one.members if m in self.published]
            now = total.value - sum(p.value for p in parts)
            for number in self.shown_in.get(total.series, ()):
                release = self.released[number]
                before = [release.values.get(f.series) for f in (total, *parts)]
                known = [v for v in before if v is not None]
                if len(known) < len(before):
                    continue
                if 0 < abs(now - (known[0] - sum(known[1:]))) < self.k:
                    hide.add(one.total)
        return hide

    def _completed_groups(self) -> set[str]:
        """A group released with a published total and two or more hidden parts must not
        be left with exactly one unknown part by today's figures."""
        hide: set[str] = set()
        published_series = {self.figures[i].series: i for i in self.published}
        known_series = {
            f.series for f in self.figures.values() if self._var(f) in self.known_before
        }
        for release in self.released:
            for one in release.sums:
                if one.weights is not None or release.values.get(one.total) is None:
                    continue
                hidden = [m for m in one.members if release.values.get(m) is None]
                newly = [published_series[m] for m in hidden if m in published_series]
                unknown = [m for m in hidden if m not in published_series and m not in known_series]
                if len(hidden) >= 2 and len(unknown) == 1 and newly:
                    hide.add(min(newly, key=lambda i: (self.figures[i].people, i)))
        return hide


def _groups(rows: Sequence[Mapping[str, Coefficient]]) -> list[tuple[set[str], list[int]]]:
    """The rows split into groups sharing no variable: (variables, row numbers) each."""
    parent: dict[str, str] = {}

    def root(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for row in rows:
        first, *rest = row
        for v in rest:
            a, b = root(first), root(v)
            if a != b:
                parent[b] = a
    found: dict[str, tuple[set[str], list[int]]] = {}
    for number, row in enumerate(rows):
        group = found.setdefault(root(next(iter(row))), (set(), []))
        group[0].update(row)
        group[1].append(number)
    return list(found.values())


def _determined(rows: Iterable[Mapping[str, Coefficient]]) -> set[str]:
    """The variables fixed by the equations `rows` (sum of coefficient x variable = a known
    number): those whose unit vector lies in the rows' span, found by Gauss-Jordan
    elimination on sparse rows. Sums have coefficients of 1, so pivots of +-1 are preferred
    and the arithmetic stays in integers unless a weighted sum needs fractions."""
    pivots: dict[str, dict[str, Coefficient]] = {}
    holding: dict[str, set[str]] = {}  # variable -> pivots whose row has it
    for given in rows:
        row = {v: c for v, c in given.items() if c}
        for var in [v for v in row if v in pivots]:
            factor = row[var]
            for v, c in pivots[var].items():
                row[v] = row.get(v, 0) - factor * c
            row = {v: c for v, c in row.items() if c}
        if not row:
            continue
        pivot = min((v for v, c in row.items() if abs(c) == 1), default=None) or min(row)
        scale = row[pivot]
        if scale != 1:
            row = {v: (-c if scale == -1 else Fraction(c) / scale) for v, c in row.items()}
        for other in list(holding.get(pivot, ())):
            target = pivots[other]
            factor = target.pop(pivot)
            for v, c in row.items():
                if v == pivot:
                    continue
                value = target.get(v, 0) - factor * c
                if value:
                    target[v] = value
                    holding.setdefault(v, set()).add(other)
                else:
                    target.pop(v, None)
                    holding.get(v, set()).discard(other)
        holding.pop(pivot, None)
        pivots[pivot] = row
        for v in row:
            holding.setdefault(v, set()).add(pivot)
    return {p for p, row in pivots.items() if len(row) == 1}


@lru_cache(maxsize=4096)
def _pinned(items: tuple[tuple[int, int], ...]) -> tuple[int | None, ...]:
    """For hidden counts given as (weight, true value): the value each must have, or None
    when another whole number >= 0 fits too, knowing only how many there are in all and
    their weighted sum."""
    return tuple(None if _moves(items, j) else _only_value(items, j) for j in range(len(items)))


def _moves(items: Sequence[tuple[int, int]], j: int) -> bool:
    """Whether a second solution is in plain sight: shifting a few counts among three
    distinct weights (or two equal ones) that keeps both the number and the weighted sum
    and changes count j. The usual case (a week's hidden buckets of hundreds of scores)
    is settled here instead of by _only_value's search, which grows with the square of
    the counts; when no such shift fits, _only_value decides."""
    weight, value = items[j]
    others = [one for i, one in enumerate(items) if i != j]
    if any(w == weight and value + v > 0 for w, v in others):
        return True
    for a, (wa, va) in enumerate(others):
        for wb, vb in others[a + 1 :]:
            if len({weight, wa, wb}) < 3:
                continue
            # For weights x < y < z, (z - y, -(z - x), y - x) keeps both sums.
            (x, vx), (y, vy), (z, vz) = sorted(((weight, value), (wa, va), (wb, vb)))
            shift = ((vx, z - y), (vy, x - z), (vz, y - x))
            if all(v + d >= 0 for v, d in shift) or all(v - d >= 0 for v, d in shift):
                return True
    return False


def _only_value(items: Sequence[tuple[int, int]], j: int) -> int | None:
    """The value count j must have (None when more than one fits), by trying every value
    against the weighted sums the other counts can reach."""
    total = sum(value for _, value in items)
    weighted = sum(weight * value for weight, value in items)
    weight = items[j][0]
    others = [w for i, (w, _) in enumerate(items) if i != j]
    # reach[c]: bit s set when c of the others can have weighted sum s
    reach = [1]
    for _ in range(total):
        step = 0
        for w in set(others):
            step |= reach[-1] << w
        reach.append(step)
    fits = [
        v
        for v in range(total + 1)
        if weighted - weight * v >= 0 and reach[total - v] >> (weighted - weight * v) & 1
    ]
    return fits[0] if len(fits) == 1 else None

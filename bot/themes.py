"""Coding free-text answers into themes, so managers see what people raise, never who said it.

The taxonomy (dialogues/themes.yaml) lists each theme's keywords per language, written in
their plain (radical) form. Answers are matched after `bot.text_match` normalisation: case,
accents, invisible marks, stems, and in Welsh initial mutations ("tai", "dai", "thai" and
"nhai" all count as "tai"). An answer may carry several themes or none.

Every answer is read in both languages, whichever the person chose, as the safeguarding
check is: people in Wales switch ("My probation officer never listens" from someone who
chose Cymraeg). Read in the language the person did not choose, a few words are skipped
(`FALSE_FRIENDS`): common words of the chosen language that the other language's keywords
would take for something else ("plant" is children in Welsh, "sôn" is not "son"), unless
the answer shows it is written in that other language too (`LANGUAGE_MARKERS`).

Keywords are compiled once into a dict from a stem to the keywords that start with it, so
tagging costs one look-up per form of each word: the weekly digest tags every answer, and a
benchmark tags a million. Pure: parsing takes text; only `load_taxonomy` and `load_corpus`
read files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

import yaml

from bot.text_match import stem, welsh_radicals, word_forms, words
from state_machines.loader import YAML_LOADER

SCHEMA_VERSION = 1
TAXONOMY_ID = "themes"
LANGUAGES = ("en", "cy")
SPLITS = ("train", "holdout")
ALL = "all"
EXACT = "="  # a keyword word written "=word" matches that word only, unstemmed
_THEME_KEYS = {"id", "label", "keywords"}
_ID_SHAPE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")

# A keyword compiled: the stems after its first word, and the theme it stands for.
_Entry = tuple[tuple[str, ...], int]
# A word seen in an answer: its forms, and the keywords that may start at it.
_Word = tuple[frozenset[str], tuple[_Entry, ...]]
_WORDS_REMEMBERED = 200_000  # per language; a few tens of MB at most

# Words not read in a language the person did not choose, by that language, unless the
# answer has one of that language's `LANGUAGE_MARKERS`: each is a common word of the other
# language that one of this language's keywords (or its mutated form) would take for
# something else. Found by reading the 50,000 commonest English words as Welsh, and a
# Welsh dictionary's words as English. Only a word on its own is skipped: a mutated Welsh
# form ("mhlant", "nhŷ") is no English word and still counts, and a keyword that starts
# at another word may still go on through these.
FALSE_FRIENDS: Mapping[str, frozenset[str]] = {
    # English words as Welsh: record (cofnod), plant (children), bell (pell, far), barn
    # (barnu, judge), tad (father: "a tad late"), fab (mab, son), merch (girl), mil (bil),
    # ty, thy, thai (tŷ, tai, house: "ty" is "thank you" typed), deg (teg, fair), dag
    # (tag), and names (Dai, Bella, Mila, Ariana, Fabio, Renton). "tai" itself is kept:
    # it is the Welsh for houses, and rare in English ("tai chi").
    "cy": frozenset(
        words(
            "record plant bell bella barn tad fab fabio merch mil mila ty thy thai dai deg dag"
            " ariana renton"
        )
    ),
    # Welsh words as English: sôn (mention, not "son"), po ("po fwyaf", the more; not a
    # probation officer), ap ("ar yr ap", the app, or "son of"; not approved premises).
    "en": frozenset(words("son po ap")),
}
# Common words of one language that are no common word of the other ("does", "eu", "yr",
# "her", "i'm" are left out: English "does", EU, "yr" for year; Welsh "her", challenge, and
# "i'm", to my). An answer with one is written, at least in part, in that language, so
# there its false friends mean what its keywords say: "my PO never rings back" from
# someone who chose Welsh is about their probation officer; "mae'r plant yn colli eu tad"
# from someone who chose English is about their children.
LANGUAGE_MARKERS: Mapping[str, frozenset[str]] = {
    "en": frozenset(
        words(
            "the and my with never me you they she but have because this that what when just"
            " about are it of for been would could should there their them him his get told"
            " every"
        )
    ),
    "cy": frozenset(
        words(
            "yn mae ddim dim fy ei dwi rwy roedd oedd wedi gyda ond efo hefyd iawn nhw isio"
            " eisiau angen cael gael mynd gweld dydy ydy"
        )
    ),
}


@dataclass(frozen=True)
class Theme:
    """One theme. `label` is an English gettext msgid: managers read it in their language."""

    id: str
    label: str
    keywords: Mapping[str, tuple[str, ...]] = field(hash=False)


@lru_cache(maxsize=262_144)
def _forms(word: str, lang: str) -> frozenset[str]:
    """What a written word may stand for: its stems, and "=" + the unstemmed word (or, in
    Welsh, its radicals) for exact keywords. Apostrophes are typed or left out at random
    ("didn't", "didnt"), and Welsh joins 'n and 'r on ("galw'n"): a word with one also
    counts as itself without it and as the part before it."""
    variants = {word}
    if "'" in word:
        variants |= {v for v in (word.replace("'", ""), word.split("'", 1)[0]) if v}
    forms: set[str] = set()
    for variant in variants:
        forms |= word_forms(variant, lang)
        exact = welsh_radicals(variant) if lang == "cy" else {variant}
        forms |= {EXACT + form for form in exact}
    return frozenset(forms)


def _keyword_forms(keyword: str, lang: str) -> tuple[str, ...]:
    """A keyword as the forms its words must have: a stem, or "=" + the word for a word
    written with a leading "=" (exact: "=train" does not find "training"). Keywords are
    written radical, so there is no Welsh un-mutation here: it would only add false matches.
    """
    found: list[str] = []
    for token in keyword.split():
        exact = token.startswith(EXACT)
        for word in words(token):
            plain = word.replace("'", "") or word
            found.append(EXACT + plain if exact else stem(plain, lang))
    return tuple(found)


class Taxonomy:
    """The themes, with their keywords compiled per language for fast tagging."""

    def __init__(self, themes: Sequence[Theme]) -> None:
        self.themes = tuple(themes)
        self.ids = tuple(theme.id for theme in self.themes)
        self._index: dict[str, dict[str, list[_Entry]]] = {lang: {} for lang in LANGUAGES}
        for number, theme in enumerate(self.themes):
            for lang, keywords in theme.keywords.items():
                for keyword in keywords:
                    first, *rest = _keyword_forms(keyword, lang)
                    self._index[lang].setdefault(first, []).append((tuple(rest), number))
        self._seen: dict[str, dict[str, _Word]] = {lang: {} for lang in LANGUAGES}

    def _word(self, word: str, lang: str) -> _Word:
        """A word's forms and the keywords that may start at it, remembered: most answers
        reuse a few thousand words, so tagging is then a dict look-up per word."""
        seen = self._seen[lang]
        found = seen.get(word)
        if found is None:
            if len(seen) >= _WORDS_REMEMBERED:
                seen.clear()
            forms = _forms(word, lang)
            index = self._index[lang]
            starts = tuple(dict.fromkeys(e for form in forms for e in index.get(form, ())))
            found = seen[word] = (forms, starts)
        return found

    @classmethod
    def parse(cls, text: str, source: str) -> Taxonomy:
        """The taxonomy in YAML `text`; raises ValueError naming `source:line` on bad data."""
        return cls(_parse_themes(text, source))

    def label(self, theme_id: str) -> str:
        """The English label (gettext msgid) of a theme id."""
        return self.themes[self.ids.index(theme_id)].label

    def tag(self, text: str, lang: str) -> tuple[str, ...]:
        """The ids of the themes `text` raises, in taxonomy order (empty when none).

        `lang` is the language the person chose; the text is read with the keywords of
        every language and the themes found are put together, so an English answer from
        someone who chose Welsh (or the other way round) still gets its themes. Read in a
        language other than `lang`, the words of `FALSE_FRIENDS` start no keyword, unless
        the text has one of that language's `LANGUAGE_MARKERS`.

        Longest match wins, within each language: where a phrase matches, its words start
        no shorter keyword, so "unpaid work" is a programme and not a job, "housing officer"
        housing and not the practitioner. Keywords of the same length all count ("rent":
        housing and money).
        """
        if lang not in self._index:
            raise ValueError(f"unknown language '{lang}'; use one of: {', '.join(LANGUAGES)}")
        written = words(text)
        found: set[int] = set()
        for reading in LANGUAGES:
            found |= self._themes_in(written, reading, chosen=reading == lang)
        return tuple(self.ids[number] for number in sorted(found))

    def _themes_in(self, written: list[str], lang: str, chosen: bool) -> set[int]:
        """The theme numbers that `lang`'s keywords find in the words `written`. Unless
        `lang` is the person's `chosen` one or the words have one of its markers, its false
        friends start no keyword (a word with an apostrophe counts as `_forms` reads it:
        "plant's" is "plant", "mae'r" is "mae")."""
        looked = [self._word(word, lang) for word in written]
        if not chosen:
            friends = [
                position
                for position, (word, (_, starts)) in enumerate(zip(written, looked, strict=True))
                if starts and _among(word, FALSE_FRIENDS[lang])
            ]
            if friends and not any(_among(word, LANGUAGE_MARKERS[lang]) for word in written):
                for position in friends:
                    looked[position] = (looked[position][0], ())
        found: set[int] = set()
        skip_to = 0
        for position, (_, starts) in enumerate(looked):
            if not starts or position < skip_to:
                continue
            longest, themes = 0, list[int]()
            for rest, number in starts:
                size = len(rest) + 1
                if size < longest or (rest and not _follows(rest, looked, position + 1)):
                    continue
                if size > longest:
                    longest, themes = size, []
                themes.append(number)
            found.update(themes)
            skip_to = position + longest
        return found


def _among(word: str, listed: frozenset[str]) -> bool:
    """Whether `word` is one of `listed`, as written or as `_forms` reads an apostrophe."""
    if word in listed:
        return True
    return "'" in word and (word.replace("'", "") in listed or word.split("'", 1)[0] in listed)


def _follows(rest: tuple[str, ...], looked: list[_Word], start: int) -> bool:
    """Whether the words from `start` on begin with the forms `rest` (a phrase's tail)."""
    if start + len(rest) > len(looked):
        return False
    return all(wanted in looked[start + offset][0] for offset, wanted in enumerate(rest))


def load_taxonomy(path: Path) -> Taxonomy:
    """The taxonomy in the YAML file at `path`."""
    return Taxonomy.parse(path.read_text("utf-8"), str(path))


# --- Reading YAML with line numbers -------------------------------------------------------


def _fail(source: str, node: yaml.Node | None, problem: str) -> NoReturn:
    line = node.start_mark.line + 1 if node is not None else 1
    raise ValueError(f"{source}:{line}: {problem}")


def _compose(text: str, source: str) -> yaml.Node:
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "unreadable"
        raise ValueError(f"{source}:{line}: not valid YAML: {problem}") from None
    if root is None:
        raise ValueError(f"{source}:1: the file is empty")
    return root


def _mapping(node: yaml.Node, source: str, what: str) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        _fail(source, node, f"{what} must be a mapping")
    found: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = _scalar(key, source, f"a key in {what}")
        if name in found:
            _fail(source, key, f"'{name}' is given twice in {what}")
        found[name] = value
    return found


def _sequence(node: yaml.Node, source: str, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        _fail(source, node, f"{what} must be a list")
    return list(node.value)


def _scalar(node: yaml.Node, source: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        _fail(source, node, f"{what} must be a non-empty text")
    return str(node.value).strip()


def _require(
    fields: dict[str, yaml.Node], key: str, source: str, parent: yaml.Node, what: str
) -> yaml.Node:
    if key not in fields:
        _fail(source, parent, f"{what} has no '{key}'")
    return fields[key]


def _header(root: yaml.Node, source: str, expected_id: str | None) -> dict[str, yaml.Node]:
    """The top-level mapping, after checking schema_version (and id, when expected)."""
    top = _mapping(root, source, "the file")
    version = _require(top, "schema_version", source, root, "the file")
    if _scalar(version, source, "schema_version") != str(SCHEMA_VERSION):
        _fail(source, version, f"schema_version must be {SCHEMA_VERSION}")
    if expected_id is not None:
        given = _require(top, "id", source, root, "the file")
        if _scalar(given, source, "id") != expected_id:
            _fail(source, given, f"id must be '{expected_id}'")
    return top


def _parse_themes(text: str, source: str) -> list[Theme]:
    root = _compose(text, source)
    top = _header(root, source, TAXONOMY_ID)
    extra = sorted(set(top) - {"schema_version", "id", "themes"})
    if extra:
        _fail(source, root, f"unknown key(s) {', '.join(extra)}: the file holds only themes")
    nodes = _sequence(_require(top, "themes", source, root, "the file"), source, "themes")
    if not nodes:
        _fail(source, top["themes"], "themes is empty")
    themes: list[Theme] = []
    for node in nodes:
        theme = _parse_theme(node, source)
        if theme.id in (known.id for known in themes):
            _fail(source, node, f"theme id '{theme.id}' is used twice")
        themes.append(theme)
    return themes


def _parse_theme(node: yaml.Node, source: str) -> Theme:
    fields = _mapping(node, source, "a theme")
    unknown = sorted(set(fields) - _THEME_KEYS)
    if unknown:
        _fail(source, node, f"unknown key(s) in a theme: {', '.join(unknown)}")
    id_node = _require(fields, "id", source, node, "a theme")
    theme_id = _scalar(id_node, source, "a theme id")
    if not _ID_SHAPE.match(theme_id):
        _fail(source, id_node, f"theme id '{theme_id}' must be snake_case")
    label = _scalar(_require(fields, "label", source, node, f"theme '{theme_id}'"), source, "label")
    keywords_node = _require(fields, "keywords", source, node, f"theme '{theme_id}'")
    keywords: dict[str, tuple[str, ...]] = {}
    for lang, list_node in _mapping(keywords_node, source, f"keywords of '{theme_id}'").items():
        if lang not in LANGUAGES:
            _fail(source, list_node, f"unknown language '{lang}' in '{theme_id}'")
        keywords[lang] = _parse_keywords(list_node, source, theme_id, lang)
    for lang in LANGUAGES:
        if lang not in keywords:
            _fail(source, keywords_node, f"theme '{theme_id}' has no keywords for '{lang}'")
    return Theme(theme_id, label, keywords)


def _parse_keywords(node: yaml.Node, source: str, theme_id: str, lang: str) -> tuple[str, ...]:
    what = f"{theme_id}/{lang}"
    items = _sequence(node, source, f"keywords {what}")
    if not items:
        _fail(source, node, f"keywords {what} is empty")
    seen: dict[tuple[str, ...], str] = {}
    for item in items:
        keyword = _scalar(item, source, f"a keyword in {what}")
        compiled = _keyword_forms(keyword, lang)
        if not compiled:
            _fail(source, item, f"keyword '{keyword}' in {what} has no letters or digits")
        if compiled in seen:
            other = seen[compiled]
            _fail(source, item, f"'{keyword}' in {what} finds the same words as '{other}'")
        seen[compiled] = keyword
    return tuple(seen.values())


# --- The labelled corpus and scores ------------------------------------------------------


@dataclass(frozen=True)
class CorpusItem:
    """One invented answer with the themes a person coding it by hand gave it."""

    text: str
    lang: str
    themes: frozenset[str]
    split: str


def parse_corpus(text: str, source: str) -> list[CorpusItem]:
    """The labelled answers in YAML `text` (tests/corpus/themes.yaml)."""
    root = _compose(text, source)
    top = _header(root, source, None)
    items: list[CorpusItem] = []
    for node in _sequence(_require(top, "items", source, root, "the file"), source, "items"):
        fields = _mapping(node, source, "an item")
        lang = _scalar(_require(fields, "lang", source, node, "an item"), source, "lang")
        split = _scalar(_require(fields, "split", source, node, "an item"), source, "split")
        if lang not in LANGUAGES or split not in SPLITS:
            _fail(source, node, f"lang must be one of {LANGUAGES}, split one of {SPLITS}")
        themes = _require(fields, "themes", source, node, "an item")
        ids = [_scalar(t, source, "a theme id") for t in _sequence(themes, source, "themes")]
        text_node = _require(fields, "text", source, node, "an item")
        items.append(CorpusItem(str(text_node.value), lang, frozenset(ids), split))
    return items


def load_corpus(path: Path) -> list[CorpusItem]:
    """The labelled answers in the YAML file at `path`."""
    return parse_corpus(path.read_text("utf-8"), str(path))


@dataclass(frozen=True)
class Counts:
    """Micro-averaged counts over answers: each (answer, theme) pair is one decision."""

    n: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.n + other.n, self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        """Share of given themes that were right; 1.0 when none were given (none wrong)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """Share of expected themes found; 1.0 when none were expected."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


@dataclass(frozen=True)
class Scores:
    """Counts per (split, language) and per (split, theme); "all" totals either."""

    cells: dict[tuple[str, str], Counts]
    by_theme: dict[tuple[str, str], Counts]

    def cell(self, split: str, lang: str = ALL) -> Counts:
        return self.cells.get((split, lang), Counts())


def evaluate(taxonomy: Taxonomy, items: Iterable[CorpusItem]) -> Scores:
    """Tag every item and compare with its labels; raises ValueError on an unknown label."""
    cells: dict[tuple[str, str], Counts] = {}
    by_theme: dict[tuple[str, str], Counts] = {}
    known = set(taxonomy.ids)
    for item in items:
        if not item.themes <= known:
            unknown = ", ".join(sorted(item.themes - known))
            raise ValueError(f"corpus label(s) not in the taxonomy: {unknown}")
        given = set(taxonomy.tag(item.text, item.lang))
        one = Counts(
            1, len(given & item.themes), len(given - item.themes), len(item.themes - given)
        )
        for key in ((item.split, item.lang), (item.split, ALL), (ALL, item.lang), (ALL, ALL)):
            cells[key] = cells.get(key, Counts()) + one
        for theme_id in given | item.themes:
            hit = Counts(
                0,
                int(theme_id in given and theme_id in item.themes),
                int(theme_id not in item.themes),
                int(theme_id not in given),
            )
            for split in (item.split, ALL):
                by_theme[split, theme_id] = by_theme.get((split, theme_id), Counts()) + hit
    return Scores(cells, by_theme)

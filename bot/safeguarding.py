"""Risk phrases in free text: spotting a message that may mean someone is at risk, so the bot
can signpost help (999, Samaritans, NHS 111) before anything else.

A miss is far worse than a false alarm, so matching forgives what phones and feelings do to
spelling: one wrong, missing, extra or swapped letter in longer words ("sucide", "myslef"),
words split or run together ("my self", "selfharm"), texting shorthand ("gonna", "2"),
repeated letters, Welsh initial mutations ("i ladd fy hun"), and filler words inside a
phrase ("want to just die"). It does not stem: "killing time" must not read as "killing
myself"; and words of the `not_risk` phrases ("in danger of") never count. The lists live
in dialogues/safeguarding.yaml. Pure: only `load_risk_phrases` reads a file. Nothing logs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.text_match import welsh_radicals, words
from state_machines.loader import YAML_LOADER

CATEGORIES = ("suicide", "self_harm", "harm_to_others", "immediate_danger")
LANGS = ("en", "cy")
_TOP_KEYS = ("schema_version", "id", "lists", "not_risk", "shorthand", "gap_stops")
_FUZZY_MIN = 6  # a misspelt word is read as a listed word only when that word is this long
_REPEATS = re.compile(r"(.)\1{2,}")
_APART = re.compile(r"(?<!\S)(i )?((?:\w ){2,}\w)(?!\S)")
# When a text matches several entries, the one reported (all are signposted the same way):
# "I will kill myself" is about suicide, "he is going to kill me" about danger, not harm.
_PRIORITY = ("suicide", "self_harm", "immediate_danger", "harm_to_others")
_Keys = dict[str, tuple[yaml.Node, yaml.Node]]  # a YAML mapping's (key, value) nodes by key
_NOTHING: frozenset[str] = frozenset()  # no listed word: shared, not built per token
# English contraction endings, written out before apostrophes are dropped (see _uncontracted).
# "'s" (is, has or a possessive) and "'m" (only "I'm", which `shorthand` reads) are not here.
_CONTRACTIONS = {"'ll": "will", "'re": "are", "'ve": "have", "'d": "would", "n't": "not"}
_CONTRACTION = re.compile(r"(?<=\w)('ll|'re|'ve|'d|n't)$")
# Where the word before "n't" is not the word it stands for. "cannot" as the lists spell it.
_IRREGULAR_NOT = {"can't": "cannot", "won't": "will not", "shan't": "shall not", "ain't": "am not"}


@dataclass(frozen=True)
class RiskMatch:
    """Why a text was signposted: the list (category and language) and the entry as written
    there, for maintainers. Never the person's words."""

    category: str
    entry: str
    lang: str


@dataclass(frozen=True)
class _Phrase:
    words: tuple[str, ...]  # as matched: shorthand expanded
    written: frozenset[str]  # as written in the list, to tell "kil myself" from "kill myself"
    category: str  # "" for a not_risk phrase
    entry: str
    line: int
    joined: tuple[str, ...]  # each word run together with the next: "selfharm"
    # Filler words allowed inside: two would read "killing time by myself" as "killing
    # myself", so two-word phrases get one, longer ones two; not_risk phrases none.
    max_gap: int


def _near_keys(text: str, length: int) -> tuple[str, str, str]:
    """The parts of a `length`-letter form (5 or more) under which the listed words it may
    misspell are filed: its first half, its second half, and both less the letter each side
    of the cut. One edit (a changed, missing, extra or swapped letter) leaves one of them
    as it was, so a word one edit from the form shares a part with it. A word one letter
    longer or shorter is cut as the form would be: the head from its start, the tail from
    its end. Parts of different kinds that happen to be equal only add a candidate that
    `_one_edit` then rejects."""
    half = length // 2
    tail = length - half
    return text[:half], text[-tail:], text[: half - 1] + text[1 - tail :]


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by at most one inserted, deleted, changed or swapped letter."""
    if abs(len(a) - len(b)) > 1:
        return False
    if a == b:
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    i = 0  # the first difference (a prefix of long, short has none)
    while i < len(short) and short[i] == long[i]:
        i += 1
    if len(short) < len(long):  # a letter missing from short at i
        return short[i:] == long[i + 1 :]
    # The same length: a letter changed at i, or the letters at i and i+1 swapped.
    return short[i + 1 :] == long[i + 1 :] or (
        short[i : i + 2] == long[i + 1 : i + 2] + long[i : i + 1]
        and short[i + 2 :] == long[i + 2 :]
    )


class _Lexicon:
    """One language's phrases, shorthand and gap stops, with indexes built once."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.shorthand: dict[str, tuple[str, ...]] = {}
        self.stops: set[str] = set()
        self.risk: list[_Phrase] = []
        self.ordinary: list[_Phrase] = []
        self.risk_starts: dict[str, list[int]] = {}  # first word -> phrases, by index
        self.ordinary_starts: dict[str, list[int]] = {}
        self._exact: dict[str, set[str]] = {}  # a written form -> listed words it may be
        # Long risk words by (key, length) for each `_near_keys` of each length a misspelling
        # may have: a written form needs only its own three keys looked up, not every form
        # with a letter missing.
        self._near: dict[tuple[str, int], set[str]] = {}
        self.longest = 0

    def tokens(self, text: str) -> list[tuple[str, str]]:
        """The words of a text as the lists see them (no apostrophes, shorthand expanded),
        each with the word it was written as."""
        return self.expand(_single_words(text))

    def expand(self, single_words: list[str]) -> list[tuple[str, str]]:
        """`tokens` of words already split by `_single_words`."""
        out: list[tuple[str, str]] = []
        for word in single_words:
            out.extend((token, word) for token in self.shorthand.get(word, (word,)))
        return out

    def add(self, phrase: _Phrase) -> None:
        risky = bool(phrase.category)
        phrases, starts = (
            (self.risk, self.risk_starts) if risky else (self.ordinary, self.ordinary_starts)
        )
        for key in {phrase.words[0], *phrase.joined[:1]}:
            starts.setdefault(key, []).append(len(phrases))
        phrases.append(phrase)
        for word in (*phrase.words, *phrase.joined):
            self.longest = max(self.longest, len(word))
            forms = welsh_radicals(word) if self.lang == "cy" else {word}
            for form in forms:
                self._exact.setdefault(form, set()).add(word)
            if risky and len(word) >= _FUZZY_MIN:
                for length in range(len(word) - 1, len(word) + 2):
                    for key in _near_keys(word, length):
                        self._near.setdefault((key, length), set()).add(word)

    def readings(self, token: str) -> tuple[frozenset[str], frozenset[str]]:
        """The listed words a written token may stand for: read exactly, and read forgiving
        one misspelt letter (which includes the exact readings). Both at once, as they share
        the work of finding the token's forms."""
        forms = {token}
        if _REPEATS.search(token):
            forms |= {_REPEATS.sub(r"\1", token), _REPEATS.sub(r"\1\1", token)}
        if self.lang == "cy":  # a form is among its own radicals
            forms = {radical for form in forms for radical in welsh_radicals(form)}
        exact: set[str] = set()
        misspelt: set[str] = set()
        for form in forms:
            length = len(form)
            # A form longer than every listed word, even less a letter, cannot be one.
            if length > self.longest + 1:
                continue
            listed = self._exact.get(form)
            if listed:
                exact |= listed
            if length < _FUZZY_MIN - 1:
                continue
            for key in _near_keys(form, length):
                candidates = self._near.get((key, length))
                if candidates:
                    misspelt.update(
                        word for word in candidates if word[0] == form[0] and _one_edit(word, form)
                    )
        read_exactly = frozenset(exact) if exact else _NOTHING
        if misspelt <= exact:
            return read_exactly, read_exactly
        return read_exactly, frozenset(exact | misspelt)


class _Scan:
    """One text read against one language's lists. Each distinct token is read once, for
    every pass; what the scan learns of the text goes with it."""

    def __init__(self, lexicon: _Lexicon, single_words: list[str]) -> None:
        self.lexicon = lexicon
        expanded = lexicon.expand(single_words)
        self.tokens = [token for token, _ in expanded]
        self.written = [word for _, word in expanded]
        self.blocked = [False] * len(self.tokens)
        seen: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        singles = [self._read(token, seen) for token in self.tokens]
        # Each token run together with the next ("my self" -> "myself"), by first position.
        # Whether the pair counts depends on blocking, so _pair_at decides that, not this.
        pairs_read = [self._read(a + b, seen) for a, b in itertools.pairwise(self.tokens)]
        # (tokens, pairs) as each pass reads them: exactly, or forgiving a misspelling.
        self._exact_readings = ([e for e, _ in singles], [e for e, _ in pairs_read])
        self._forgiving_readings = ([f for _, f in singles], [f for _, f in pairs_read])
        # Without a misspelling read anywhere, a forgiving pass finds only what the exact
        # pass finds, each ranked below its exact twin, so it can be skipped.
        self.any_misspelt = any(
            len(forgiving) > len(exact) for exact, forgiving in (*singles, *pairs_read)
        )
        self._single, self._pair = self._exact_readings
        for _, start, end in list(self.matches(lexicon.ordinary, lexicon.ordinary_starts, False)):
            self.blocked[start:end] = [True] * (end - start)

    def rank(self, phrase: _Phrase, start: int, end: int, fuzzy: bool) -> tuple[int, ...]:
        """Which of several matches to report: the gravest category, then an exact reading,
        the earliest, the longest, and the entry written most like the text."""
        alike = len(phrase.written & set(self.written[start:end]))
        return (_PRIORITY.index(phrase.category), fuzzy, start, start - end, -alike, phrase.line)

    def _read(
        self, token: str, seen: dict[str, tuple[frozenset[str], frozenset[str]]]
    ) -> tuple[frozenset[str], frozenset[str]]:
        found = seen.get(token)
        if found is None:
            found = seen[token] = self.lexicon.readings(token)
        return found

    def matches(
        self, phrases: list[_Phrase], starts: dict[str, list[int]], fuzzy: bool
    ) -> Iterator[tuple[_Phrase, int, int]]:
        """(phrase, first token, token after the last) for each match, leftmost first; at
        one place, longer phrases first (the more specific entry names the risk best)."""
        self._single, self._pair = self._forgiving_readings if fuzzy else self._exact_readings
        for j in range(len(self.tokens)):
            if self.blocked[j]:
                continue
            single, pair = self._single[j], self._pair_at(j)
            if not single and not pair:
                continue
            found = {i for keys in (single, pair) for key in keys for i in starts.get(key, ())}
            for i in sorted(found, key=lambda i: (-len(phrases[i].words), i)):
                end = self._match_at(phrases[i], 0, j, phrases[i].max_gap)
                if end >= 0:
                    yield phrases[i], j, end

    def _pair_at(self, k: int) -> frozenset[str]:
        """Readings of tokens k and k+1 run together ("my self" -> "myself")."""
        if k + 1 >= len(self.tokens) or self.blocked[k + 1]:
            return _NOTHING
        return self._pair[k]

    def _match_at(self, phrase: _Phrase, i: int, k: int, gaps_left: int) -> int:
        """The token after a match of phrase.words[i:] from token k, or -1."""
        if i == len(phrase.words):
            return k
        if k >= len(self.tokens):
            return -1
        if not self.blocked[k]:
            here, wanted = self._single[k], phrase.words[i]
            if wanted in here:
                end = self._match_at(phrase, i + 1, k + 1, gaps_left)
                if end >= 0:
                    return end
            if i + 1 < len(phrase.words) and phrase.joined[i] in here:  # "selfharm"
                end = self._match_at(phrase, i + 2, k + 1, gaps_left)
                if end >= 0:
                    return end
            if wanted in self._pair_at(k):  # "my self"
                end = self._match_at(phrase, i + 1, k + 2, gaps_left)
                if end >= 0:
                    return end
        if i > 0 and gaps_left > 0 and self.tokens[k] not in self.lexicon.stops:
            return self._match_at(phrase, i, k + 1, gaps_left - 1)
        return -1


class RiskPhrases:
    """The risk-phrase lists of both languages, compiled for fast checks."""

    def __init__(self, lexicons: dict[str, _Lexicon]) -> None:
        self._lexicons = lexicons

    @classmethod
    def parse(cls, text: str, source: str) -> RiskPhrases:
        """Read the YAML lists; bad data raises ValueError naming `source:line`. Every risk
        entry must be signposted on its own, so a shorthand or a not_risk phrase cannot
        silently switch one off."""
        top = _top(text, source)
        lexicons = {lang: _Lexicon(lang) for lang in LANGS}
        for lang, (_, node) in _optional(source, top, "shorthand").items():
            for short, (key_node, value) in _mapping(source, node, f"shorthand {lang}").items():
                key_words = _single_words(short)
                meaning = _single_words(value.value) if isinstance(value, yaml.ScalarNode) else []
                if len(key_words) != 1 or not meaning:
                    problem = "must be one word standing for one or more words"
                    raise _fail(source, key_node, f"shorthand {lang}: '{short}' {problem}")
                lexicons[lang].shorthand[key_words[0]] = tuple(meaning)
        for lang, (_, node) in _optional(source, top, "gap_stops").items():
            for word, item in _strings(source, node, f"gap_stops {lang}"):
                if len(_single_words(word)) != 1:
                    raise _fail(source, item, f"gap_stops {lang}: '{word}' must be one word")
                lexicons[lang].stops.add(_single_words(word)[0])
        seen: dict[tuple[str, tuple[str, ...]], int] = {}
        lists = _mapping(source, top["lists"][1], "lists")
        for category, (key_node, node) in lists.items():
            if category not in CATEGORIES:
                problem = f"unknown category '{category}' (use {', '.join(CATEGORIES)})"
                raise _fail(source, key_node, f"lists: {problem}")
            for lang, (_, entries) in _per_lang(source, (key_node, node), category, True).items():
                _add(source, lexicons[lang], category, _strings(source, entries, category), seen)
        missing = [c for c in CATEGORIES if c not in lists]
        if missing:
            raise _fail(source, top["lists"][0], f"lists: missing {', '.join(missing)}")
        for lang, (_, node) in _optional(source, top, "not_risk").items():
            _add(source, lexicons[lang], "", _strings(source, node, "not_risk"), seen)
        for lexicon in lexicons.values():
            for phrase in lexicon.risk:
                scan = _Scan(lexicon, _single_words(phrase.entry))
                if next(scan.matches(lexicon.risk, lexicon.risk_starts, False), None) is None:
                    raise ValueError(
                        f"{source}:{phrase.line}: '{phrase.entry}' would never be signposted: "
                        "a not_risk phrase or a shorthand covers its words"
                    )
        return cls(lexicons)

    def entries(self, lang: str) -> list[tuple[str, str]]:
        """(category, entry) for every risk phrase of a language, in file order."""
        return [(p.category, p.entry) for p in self._lexicons[lang].risk]

    def check(self, text: str, lang: str) -> RiskMatch | None:
        """The risk phrase found in `text`, or None. Both languages' lists are checked
        whatever `lang` (the person's chosen language) says, because people switch: English
        first, then Welsh. Of several matches, the one reported is the gravest (see
        _PRIORITY), read exactly rather than as a misspelling if it can be. Total: any text,
        of any length or script, gives an answer."""
        del lang  # the same lists in the same order for everyone
        single_words = _single_words(text)
        for code in LANGS:
            lexicon = self._lexicons[code]
            scan = _Scan(lexicon, single_words)
            found = [
                (phrase, start, end, fuzzy)
                for fuzzy in ((False, True) if scan.any_misspelt else (False,))
                for phrase, start, end in scan.matches(lexicon.risk, lexicon.risk_starts, fuzzy)
            ]
            if found:
                phrase = min(found, key=lambda match: scan.rank(*match))[0]
                return RiskMatch(phrase.category, phrase.entry, code)
        return None


def load_risk_phrases(path: Path) -> RiskPhrases:
    """The lists in a YAML file (normally dialogues/safeguarding.yaml)."""
    return RiskPhrases.parse(path.read_text("utf-8"), str(path))


# --- reading the file -------------------------------------------------------------------


def _fail(source: str, node: yaml.Node, problem: str) -> ValueError:
    return ValueError(f"{source}:{node.start_mark.line + 1}: {problem}")


def _mapping(source: str, node: yaml.Node, what: str) -> _Keys:
    if not isinstance(node, yaml.MappingNode):
        raise _fail(source, node, f"{what} must be a mapping")
    found: _Keys = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise _fail(source, key, f"{what}: keys must be plain words")
        if key.value in found:
            raise _fail(source, key, f"{what}: '{key.value}' appears twice")
        found[key.value] = (key, value)
    return found


def _strings(source: str, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.SequenceNode):
        raise _fail(source, node, f"{what} must be a list")
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or item.tag == "tag:yaml.org,2002:null":
            raise _fail(source, item, f"{what}: each entry must be text")
    return [(str(item.value), item) for item in node.value]


def _per_lang(source: str, pair: tuple[yaml.Node, yaml.Node], what: str, required: bool) -> _Keys:
    """A mapping by language code; `pair` is its (key, value) so a problem names the key."""
    key_node, node = pair
    by_lang = _mapping(source, node, what)
    for lang, (lang_node, _) in by_lang.items():
        if lang not in LANGS:
            raise _fail(source, lang_node, f"{what}: unknown language '{lang}' (use en, cy)")
    missing = [lang for lang in LANGS if lang not in by_lang]
    if required and missing:
        raise _fail(source, key_node, f"{what}: missing {', '.join(missing)}")
    return by_lang


def _single_words(text: str) -> list[str]:
    """Normalised words without apostrophes, English contractions written out ("he'll" is
    "he will", not "hell"); letters typed apart ("s u i c i d e") joined, but a leading "i"
    stays a word: "i w a n t" is "i want"."""
    plain = " ".join(w for w in (_uncontracted(w).replace("'", "") for w in words(text)) if w)
    return _APART.sub(lambda m: (m[1] or "") + m[2].replace(" ", ""), plain).split()


def _uncontracted(word: str) -> str:
    """A word (normalised: a curly apostrophe is already straight) with English contraction
    endings written out: "he'll" -> "he will", "they'd've" -> "they would have". Only where
    the apostrophe tells a contraction from a word: without it "hell", "shell", "ill",
    "were" and "well" are words of their own. Forms that are not ("dont", "theyre", "im")
    are read by the `shorthand` table, in each language, so "i'm" is left to it: in Welsh
    it means "i fy" (to my), not "I am"."""
    endings: list[str] = []
    while word not in _IRREGULAR_NOT and (found := _CONTRACTION.search(word)) is not None:
        endings.append(_CONTRACTIONS[found[1]])
        word = word[: found.start()]
    return " ".join((_IRREGULAR_NOT.get(word, word), *reversed(endings)))


def _top(text: str, source: str) -> _Keys:
    """The file's top-level keys, checked: schema_version 1, id safeguarding, lists."""
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ValueError(
            f"{source}:{line}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if root is None:
        raise ValueError(f"{source}:1: the file is empty")
    top = _mapping(source, root, "the file")
    for key, (key_node, _) in top.items():
        if key not in _TOP_KEYS:
            raise _fail(source, key_node, f"unknown key '{key}' (allowed: {', '.join(_TOP_KEYS)})")
    for key, wanted in (("schema_version", "1"), ("id", "safeguarding"), ("lists", None)):
        if key not in top:
            raise _fail(source, root, f"missing '{key}'")
        value = top[key][1]
        if wanted is not None and (not isinstance(value, yaml.ScalarNode) or value.value != wanted):
            raise _fail(source, value, f"'{key}' must be {wanted}")
    return top


def _optional(source: str, top: _Keys, key: str) -> _Keys:
    return _per_lang(source, top[key], key, False) if key in top else {}


def _add(
    source: str,
    lexicon: _Lexicon,
    category: str,
    entries: list[tuple[str, yaml.Node]],
    seen: dict[tuple[str, tuple[str, ...]], int],
) -> None:
    """Add a list's entries; `seen` holds every entry so far, to report repeats."""
    what = category or "not_risk"
    for entry, item in entries:
        line = item.start_mark.line + 1
        phrase_words = tuple(token for token, _ in lexicon.tokens(entry))
        if not phrase_words:
            raise _fail(source, item, f"{what}: '{entry}' has no words")
        written = tuple(_single_words(entry))  # "kil myself" may stay beside "kill myself"
        if (lexicon.lang, written) in seen:
            first = seen[lexicon.lang, written]
            raise _fail(source, item, f"{what}: '{entry}' repeats the entry on line {first}")
        seen[lexicon.lang, written] = line
        joined = tuple(a + b for a, b in itertools.pairwise(phrase_words))
        gaps = min(len(phrase_words) - 1, 2) if category else 0
        entry = entry.strip()
        lexicon.add(_Phrase(phrase_words, frozenset(written), category, entry, line, joined, gaps))

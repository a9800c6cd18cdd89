"""Reading people's free text the same way everywhere: for themes, risk phrases and quotes.

Text from phones is messy: capitals, accents typed or not, curly apostrophes, zero-width
and right-to-left marks pasted in, emoji. `normalise` makes two spellings of the same words
compare equal. Welsh also changes the first letter of a word after some words (initial
mutations: "tai" houses, "dai", "thai", "nhai"); `welsh_radicals` undoes them so one keyword
matches every form. Pure functions: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import snowballstemmer  # type: ignore[import-untyped]

# Zero-width characters, joiners, and bidirectional controls people paste in by accident.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_NOT_WORD = re.compile(r"[^\w']+|(?<!\w)'|'(?!\w)")
_VOWELS = "aeiouwy"


def normalise(text: str) -> str:
    """Lower case, no accents, no invisible marks, words separated by single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text).translate(_APOSTROPHES).casefold()
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    )
    return " ".join(_NOT_WORD.sub(" ", stripped).replace("_", " ").split())


def words(text: str) -> list[str]:
    """The words of a text, normalised."""
    return normalise(text).split()


# Welsh initial mutations, as (mutated beginning, radical beginning). Longest first, so
# "ngh" is tried before "ng" and "ch" before "c".
_WELSH_UNMUTATE: tuple[tuple[str, str], ...] = (
    ("ngh", "c"),  # nasal: fy nghar (car)
    ("mh", "p"),  # nasal: fy mhen (pen)
    ("nh", "t"),  # nasal: fy nhad (tad)
    ("ng", "g"),  # nasal: fy ngwaith (gwaith)
    ("ch", "c"),  # aspirate: ei char (car)
    ("ph", "p"),  # aspirate: ei phen (pen)
    ("th", "t"),  # aspirate: ei thai (tai)
    ("dd", "d"),  # soft: ei ddyled (dyled)
    ("g", "c"),  # soft: ei gar (car)
    ("b", "p"),  # soft: ei ben (pen)
    ("d", "t"),  # soft: ei dai (tai)
    ("f", "b"),  # soft: ei fudd-dal (budd-dal)
    ("f", "m"),  # soft: ei fam (mam)
    ("l", "ll"),  # soft: ei law (llaw)
    ("r", "rh"),  # soft: ei rent? (rhent)
    ("m", "b"),  # nasal: fy mudd-dal (budd-dal)
    ("n", "d"),  # nasal: fy nyled (dyled)
)
# The same, by first letter, so a word is only tried against the mutations it could be:
# called for every word of every message, this is most of the cost of reading Welsh.
_WELSH_UNMUTATE_BY_LETTER: dict[str, tuple[tuple[str, str], ...]] = {
    letter: tuple(rule for rule in _WELSH_UNMUTATE if rule[0][0] == letter)
    for letter in {mutated[0] for mutated, _ in _WELSH_UNMUTATE}
}


def welsh_radicals(word: str) -> frozenset[str]:
    """The word and every form it could be a mutation of (some are not real words; they
    only need to include the right one)."""
    forms = {word}
    for mutated, radical in _WELSH_UNMUTATE_BY_LETTER.get(word[:1], ()):
        if word.startswith(mutated) and len(word) > len(mutated) + 1:
            forms.add(radical + word[len(mutated) :])
    if word[:1] in _VOWELS:
        forms.add("g" + word)  # soft mutation drops g: ei waith (gwaith)
    if word.startswith("h") and word[1:2] in _VOWELS:
        forms.add(word[1:])  # h before a vowel: ei henw (enw)
    return frozenset(forms)


_ENGLISH = snowballstemmer.stemmer("english")
# Common Welsh plural and verb endings, longest first. Crude on purpose: it only has to
# bring a keyword and its everyday forms together, e.g. swydd / swyddi, dyled / dyledion.
_WELSH_ENDINGS = (
    "iadau",
    "iaeth",
    "ion",
    "iau",
    "oedd",
    "ydd",
    "au",
    "on",
    "od",
    "io",
    "u",
    "i",
    "a",
)


@lru_cache(maxsize=65_536)
def stem(word: str, lang: str) -> str:
    """A word's stem in `lang` ("en" or "cy"), for matching keywords to their forms."""
    if lang == "cy":
        for ending in _WELSH_ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= 3:
                return word[: -len(ending)]
        return word
    return str(_ENGLISH.stemWord(word))


def word_forms(word: str, lang: str) -> frozenset[str]:
    """Every stem a written word may stand for: its own, and in Welsh its radicals'."""
    if lang == "cy":
        return frozenset(stem(form, lang) for form in welsh_radicals(word))
    return frozenset({stem(word, lang)})

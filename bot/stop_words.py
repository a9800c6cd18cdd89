"""The word STOP in any language (the brief: withdrawal is as easy as giving consent, "one
command, or the word STOP in any language"). A message that is one of the entries of
dialogues/stop_words.yaml on its own, with polite words around it and any punctuation or
emoji, means /stop; inside a sentence it does not ("please stop asking me about housing").

Messages are compared folded (`fold`): case, punctuation, emoji and invisible marks gone,
and accents too in Latin, Greek and Cyrillic letters, so "Przestań!", "przestan" and
"PRZESTAŃ 🛑" are one entry. Only there: in Indic scripts the marks are the vowels ("बंद"),
and dropping them would make different words one.
Pure: only `load_stop_words` reads a file.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path

import yaml

STOP_WORDS_FILE = "stop_words.yaml"


_ACCENTED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")
# Marks that are optional in Arabic script (vowel signs, shadda, superscript alef) and the
# tatweel that only stretches a word: typed or not, the word is the same.
_OPTIONAL_ARABIC = frozenset(chr(c) for c in (*range(0x064B, 0x0660), 0x0670, 0x0640))
# Variation selectors: an emoji's presentation, never part of a word (a phone may put one
# after any character).
_SELECTORS = frozenset(chr(c) for c in (*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)))
_NEVER_KEPT = _OPTIONAL_ARABIC | _SELECTORS
# Letters typed differently on different keyboards: Turkish dotless i, and the Arabic
# forms of kaf, yeh and heh that Urdu, Persian and Kurdish writers type on an Arabic
# keyboard.
_SAME_LETTER = str.maketrans({"ı": "i", "ك": "ک", "ي": "ی", "ى": "ی", "ە": "ه"})


def fold(text: str) -> str:
    """The message as entries are compared: lower case, words separated by single spaces,
    accents gone from Latin, Greek and Cyrillic letters (and optional marks from Arabic
    script), everything but letters, marks and digits a space, invisible format marks
    (zero-width, right-to-left) and emoji presentation selectors gone. Marks are kept only
    on letters of other scripts: in Indic scripts they are the vowels ("बंद")."""
    kept: list[str] = []
    keeps_marks = False  # the last base was a letter or digit whose marks are its own
    for char in unicodedata.normalize("NFKD", text.translate(_SAME_LETTER)):
        kind = unicodedata.category(char)
        if char in _NEVER_KEPT or kind == "Cf":
            continue
        if kind.startswith("M"):
            if keeps_marks:
                kept.append(char)
        elif kind[0] in "LN":
            kept.append(char)
            keeps_marks = kind[0] == "L" and not unicodedata.name(char, "").startswith(
                _ACCENTED_SCRIPTS
            )
        else:
            kept.append(" ")
            keeps_marks = False  # an emoji's variation selector, a keycap: not a letter's
    folded = unicodedata.normalize("NFC", "".join(kept)).casefold().translate(_SAME_LETTER)
    return " ".join(folded.split())


class StopWords:
    """The entries, folded, and the polite words that may come before or after one."""

    def __init__(self, entries: Iterable[str], polite: Iterable[str]) -> None:
        self._entries = frozenset(fold(e) for e in entries) - {""}
        self._polite = tuple(sorted({fold(p) for p in polite} - {""}, key=len, reverse=True))

    def means_stop(self, text: str) -> bool:
        """True when the whole message is an entry (or one said again and again), give or
        take polite words before and after."""
        if len(text) > 200:  # no entry is that long: spare folding a long answer
            return False
        said = fold(text)
        while True:
            if self._is_entry(said):
                return True
            peeled = self._peel(said)
            if peeled == said:
                return False
            said = peeled

    def _is_entry(self, said: str) -> bool:
        if said in self._entries:
            return True
        repeated = said.split()  # "STOP STOP STOP"
        return len(repeated) > 1 and len(set(repeated)) == 1 and repeated[0] in self._entries

    def _peel(self, said: str) -> str:
        """One polite word off each end ("please stop now": "stop")."""
        for word in self._polite:
            if said.startswith(word + " "):
                said = said[len(word) + 1 :]
                break
        for word in self._polite:
            if said.endswith(" " + word):
                said = said[: -len(word) - 1]
                break
        return said

    @classmethod
    def parse(cls, text: str, source: str) -> StopWords:
        """The file's `words` (by language) and `polite`; ValueError naming what is wrong."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{source}: not valid YAML ({exc})") from None
        if not isinstance(data, dict) or data.get("id") != "stop_words":
            raise ValueError(f"{source}: not a stop-words file (id: stop_words)")
        languages = data.get("words")
        if not isinstance(languages, dict) or not languages:
            raise ValueError(f"{source}: 'words' must map each language to a list")
        entries: list[str] = []
        for language, words in languages.items():
            if not isinstance(words, list) or not words:
                raise ValueError(f"{source}: words of '{language}' must be a list")
            for word in words:
                if not isinstance(word, str) or not fold(word):
                    raise ValueError(f"{source}: '{language}' has an entry that is no word")
                entries.append(word)
        polite = data.get("polite", [])
        if not isinstance(polite, list) or not all(isinstance(p, str) for p in polite):
            raise ValueError(f"{source}: 'polite' must be a list of words")
        return cls(entries, polite)


def load_stop_words(path: Path) -> StopWords:
    """The entries of a YAML file (normally dialogues/stop_words.yaml)."""
    return StopWords.parse(path.read_text("utf-8"), str(path))

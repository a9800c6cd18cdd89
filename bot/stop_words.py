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


def fold(text: str) -> str:
    """The message as entries are compared: lower case, words separated by single spaces,
    accents gone from Latin, Greek and Cyrillic letters, everything but letters, marks and
    digits a space, invisible format marks (zero-width, right-to-left) gone."""
    kept: list[str] = []
    base_accented = False
    for char in unicodedata.normalize("NFKD", text):
        kind = unicodedata.category(char)
        if kind.startswith("M"):
            if not base_accented:
                kept.append(char)
        elif kind == "Cf":
            continue
        elif kind[0] in "LN":
            kept.append(char)
            base_accented = unicodedata.name(char, "").startswith(_ACCENTED_SCRIPTS)
        else:
            kept.append(" ")
            base_accented = False
    return " ".join(unicodedata.normalize("NFC", "".join(kept)).casefold().split())


class StopWords:
    """The entries, normalised, and the polite words that may come before or after one."""

    def __init__(self, entries: Iterable[str], polite: Iterable[str]) -> None:
        self._entries = frozenset(fold(e) for e in entries) - {""}
        self._polite = tuple(sorted({fold(p) for p in polite} - {""}, key=len, reverse=True))

    def means_stop(self, text: str) -> bool:
        """True when the whole message is an entry, give or take polite words."""
        if len(text) > 200:  # no entry is that long: spare normalising a long answer
            return False
        said = fold(text)
        if said in self._entries:
            return True
        repeated = said.split()
        if len(repeated) > 1 and len(set(repeated)) == 1 and repeated[0] in self._entries:
            return True  # "STOP STOP STOP"
        changed = True
        while changed:  # "please stop now thanks": peel polite words off both ends
            changed = False
            for word in self._polite:
                if said.startswith(word + " "):
                    said, changed = said[len(word) + 1 :], True
                if said.endswith(" " + word):
                    said, changed = said[: -len(word) - 1], True
            if said in self._entries:
                return True
        return False

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

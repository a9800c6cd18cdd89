"""The word STOP on its own, in any language, means /stop (dialogues/stop_words.yaml, read
by bot/stop_words.py); inside a sentence it does not, and no entry is an answer the bot
asks for. The end-to-end withdrawal is in tests/test_onboarding_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from bot.stop_words import STOP_WORDS_FILE, StopWords, fold, load_stop_words

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOP_WORDS = load_stop_words(PROJECT_ROOT / "dialogues" / STOP_WORDS_FILE)


@pytest.mark.parametrize(
    ("text", "means_stop"),
    [
        ("STOP", True),
        ("  Stop! ", True),
        ("STOP 🛑", True),
        ("Stop please", True),
        ("please stop.", True),
        ("Please stop now, thank you", True),
        ('"STOP"', True),
        ("ＳＴＯＰ", True),  # full-width letters, as some keyboards type them
        ("st\u200bop", True),  # a zero-width space pasted in
        ("stopio", True),
        ("Stopiwch!", True),
        ("stop os gwelwch yn dda", True),
        ("Unsubscribe", True),
        ("opt-out", True),
        ("Stop messaging me!", True),
        ("STOP STOP STOP", True),
        ("please stop stop", True),
        ("STOP ⛔️", True),  # emoji with the variation selector phones add
        ("stop ❤️", True),
        ("Stop ✋🏽", True),  # a skin tone
        ("please stop asking me about housing", False),
        ("stop the early appointments", False),
        ("bus stop", False),
        ("stopped", False),
        ("please", False),
        ("", False),
    ],
)
def test_english_and_welsh(text: str, means_stop: bool) -> None:
    assert STOP_WORDS.means_stop(text) is means_stop


@pytest.mark.parametrize(
    "text",
    [
        "Przestań!",
        "przestan",  # typed without the accent
        "PRZESTAŃCIE",
        "Opriți",
        "opriti",
        "Dezabonează-mă",
        "ਬੰਦ ਕਰੋ",
        "band karo",
        "بند کرو",
        "Pare!",
        "Parar.",
        "توقف",
        "ايقاف",  # typed without the hamza
        "توقّف",  # with the shadda
        "توقـف",  # stretched with a tatweel
        "بند كرو",  # Urdu typed on an Arabic keyboard (kaf)
        "ABONELİKTEN ÇIK",  # Turkish capitals, dotted İ
        "abonelikten cik",
        "aufhoeren",
        "退訂",
        "বন্ধ করুন",
        "बंद करो",
        "Sustok",
        "停止",
        "Arrêtez",
        "arretez",
        "СТОП",
        "Σταμάτα",
        "dừng lại",
        "Dung lai",
        "Jooji",
        "Ndalo",
    ],
)
def test_other_languages(text: str) -> None:
    assert STOP_WORDS.means_stop(text)


@pytest.mark.parametrize(
    "text",
    [
        "para mí es importante",  # "for me it is important": para inside a sentence
        "basta con una llamada",
        # Whole messages that often mean something else: not entries.
        "basta",  # "that's all"
        "dost",  # "friend" in Urdu, Punjabi and Hindi typed in Latin letters
        "ruko",  # "wait"
        "dur",  # Turkish "wait", and "far" in Latin-letter Urdu
        "Dũng",  # a name; "dừng" folds to it
        "хватит",
        "bus stop in Cardiff",
        "बाद करो",  # another word, differing only in its vowel signs: they are kept
        "stop it stop",
        "stop, stopped",
    ],
)
def test_not_on_its_own(text: str) -> None:
    assert not STOP_WORDS.means_stop(text)


def test_no_entry_is_an_answer_the_bot_asks_for() -> None:
    """A short text of the bot's own (a button, "Yes", "Skip", a region) typed back as an
    answer must never withdraw every consent."""
    short: set[str] = set()
    for locale in ("en", "cy"):
        path = PROJECT_ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as handle:
            catalog = read_po(handle)
        for message in catalog:
            for text in (message.id, message.string):
                if isinstance(text, str) and text and len(text.split()) <= 3:
                    short.add(text)
    clashes = sorted(text for text in short if STOP_WORDS.means_stop(text))
    assert clashes == []


ENTRIES = [
    word
    for words in yaml.safe_load((PROJECT_ROOT / "dialogues" / STOP_WORDS_FILE).read_text("utf-8"))[
        "words"
    ].values()
    for word in words
]
AROUND = st.text(alphabet=" !?.,\"'()-🛑⛔️❤️✋🏽🙏\u200b\u200f", max_size=4)


@given(st.sampled_from(ENTRIES), AROUND, AROUND, st.booleans())
def test_every_entry_means_stop_however_it_is_dressed(
    entry: str, before: str, after: str, shouting: bool
) -> None:
    """Punctuation, emoji (with their selectors and skin tones), invisible marks, capitals:
    each entry of every language still means stop."""
    text = before + (entry.upper() if shouting else entry) + after
    assert STOP_WORDS.means_stop(text), text


@given(st.text(max_size=60))
def test_any_text_is_read_without_error_and_folds_to_itself(text: str) -> None:
    STOP_WORDS.means_stop(text)
    assert fold(fold(text)) == fold(text)


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        ("id: other\nwords: {en: [stop]}\n", "not a stop-words file"),
        ("id: stop_words\nwords: []\n", "'words' must map"),
        ("id: stop_words\nwords: {en: stop}\n", "words of 'en' must be a list"),
        ("id: stop_words\nwords: {en: ['!!!']}\n", "'en' has an entry that is no word"),
        ("id: stop_words\nwords: {en: [stop]}\npolite: please\n", "'polite' must be a list"),
    ],
)
def test_a_broken_file_is_refused_with_its_problem(yaml_text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        StopWords.parse(yaml_text, "stop_words.yaml")

"""The risk-phrase lists against the corpus, the matcher's forgiveness, the file format and
`python -m bot safeguarding check`. Every message here is invented."""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import safeguarding_cli
from bot.babel_extract import extract_dialogue_yaml
from bot.safeguarding import CATEGORIES, LANGS, RiskMatch, RiskPhrases, load_risk_phrases
from bot.settings import PROJECT_ROOT

PHRASES_PATH = PROJECT_ROOT / "dialogues" / "safeguarding.yaml"
CORPUS_PATH = Path(__file__).parent / "corpus" / "safeguarding.yaml"
MAX_FALSE_POSITIVE_RATE = 0.05


@pytest.fixture(scope="module")
def phrases() -> RiskPhrases:
    return load_risk_phrases(PHRASES_PATH)


def corpus() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = yaml.safe_load(CORPUS_PATH.read_text("utf-8"))["items"]
    return items


# --- the corpus -------------------------------------------------------------------------


def test_the_corpus_is_big_enough_and_well_formed() -> None:
    items = corpus()
    assert all(set(item) == {"text", "lang", "risk"} for item in items)
    assert all(item["lang"] in LANGS and isinstance(item["risk"], bool) for item in items)
    risky = [item for item in items if item["risk"]]
    ordinary = [item for item in items if not item["risk"]]
    assert len(risky) >= 80 and len(ordinary) >= 80
    assert sum(item["lang"] == "cy" for item in risky) >= 20


def test_every_risk_phrase_in_the_corpus_is_signposted(phrases: RiskPhrases) -> None:
    missed = [
        n for n, item in enumerate(corpus()) if item["risk"] and not phrases.check(**_args(item))
    ]
    assert missed == [], f"risk items not signposted (corpus index): {missed}"


def test_few_ordinary_answers_are_signposted(phrases: RiskPhrases) -> None:
    items = corpus()
    ordinary = [n for n, item in enumerate(items) if not item["risk"]]
    matched = [n for n in ordinary if phrases.check(**_args(items[n]))]
    rate = len(matched) / len(ordinary)
    # By index only: the report must not repeat the texts, even invented ones.
    print(f"false positives: {len(matched)}/{len(ordinary)} = {rate:.1%}; indexes {matched}")
    assert rate <= MAX_FALSE_POSITIVE_RATE


def _args(item: dict[str, Any]) -> dict[str, str]:
    return {"text": item["text"], "lang": item["lang"]}


# --- what the matcher forgives, and what it does not --------------------------------------


@pytest.mark.parametrize(
    ("text", "category", "entry", "lang"),
    [
        ("I want to KILL MYSELF", "suicide", "kill myself", "en"),
        ("i want to kill my self", "suicide", "kill my self", "en"),  # the entry written so
        ("kil myself", "suicide", "kil myself", "en"),  # the closest entry is reported
        ("killl myselfff", "suicide", "kill myself", "en"),  # letters typed many times
        ("suicde", "suicide", "suicde", "en"),
        ("suicied", "suicide", "suicide", "en"),  # one swapped pair, not listed
        ("take an ovedrose", "suicide", "take an overdose", "en"),  # swapped mid-word
        ("i orfen fy mywyd", "suicide", "gorffen fy mywyd", "cy"),  # mutated and misspelt
        ("sui cide", "suicide", "suicide", "en"),  # split in two
        ("s u i c i d e", "suicide", "suicide", "en"),  # typed apart
        ("self-harm", "self_harm", "self harm", "en"),
        ("selfharm", "self_harm", "self harm", "en"),
        ("want to just die", "suicide", "want to die", "en"),  # a filler word inside
        ("wanna die", "suicide", "want to die", "en"),  # shorthand
        ("want\u200b to\u200f die \U0001f62d", "suicide", "want to die", "en"),
        ("\u2018i will kill myself\u2019", "suicide", "kill myself", "en"),  # graver first
        ("he\u2019s going to kill me", "immediate_danger", "going to kill me", "en"),
        ("i ladd fy hun", "suicide", "lladd fy hun", "cy"),  # a Welsh mutation
        ("mae e'n mynd i fy mrifo", "immediate_danger", "mynd i fy mrifo", "cy"),
        ("dwi ddim yn ddiogel", "immediate_danger", "dw i ddim yn ddiogel", "cy"),
        # Contractions are written out before the apostrophe goes: "he'll" is not "hell".
        ("he'll kill me", "immediate_danger", "he will kill me", "en"),
        ("She\u2019ll kill me if I go home", "immediate_danger", "she will kill me", "en"),
        ("I'm scared he'll hurt me", "immediate_danger", "he will hurt me", "en"),
        ("we're in danger", "immediate_danger", "we are in danger", "en"),
        ("he'd kill me if I left", "immediate_danger", "he would kill me", "en"),
        ("I can't take it no more", "suicide", "cannot take it no more", "en"),
        ("theyll kill me", "immediate_danger", "they will kill me", "en"),  # shorthand
        ("hell kill me", "immediate_danger", "hell kill me", "en"),  # "hell" is a word: listed
        ("what's the point in living", "suicide", "point in living", "en"),
        ("mae e'n mynd i'm lladd", "immediate_danger", "mynd i fy lladd", "cy"),  # i'm: i fy
    ],
)
def test_forgiving_readings(
    phrases: RiskPhrases, text: str, category: str, entry: str, lang: str
) -> None:
    assert phrases.check(text, "en") == RiskMatch(category, entry, lang)


def _one_letter_off(word: str) -> set[str]:
    """The word with one letter after the first missing, changed, added or swapped."""
    edits = {word + "q"}
    for i in range(1, len(word)):
        edits |= {
            word[:i] + word[i + 1 :],
            word[:i] + "q" + word[i + 1 :],
            word[:i] + "q" + word[i:],
        }
        edits.add(word[:i] + word[i + 1 : i + 2] + word[i] + word[i + 2 :])
    return edits - {word}


def test_one_letter_off_in_any_long_word_of_any_entry_is_signposted(
    phrases: RiskPhrases,
) -> None:
    """What the file promises for words of 6 or more letters; the first letter is read as
    written. Names the misspelt texts: they are made up here, not anyone's words."""
    missed = []
    for lang in LANGS:
        for _, entry in phrases.entries(lang):
            entry_words = entry.split()
            for n, word in enumerate(entry_words):
                if len(word) < 6 or not word.isalpha():
                    continue
                for misspelt in sorted(_one_letter_off(word)):
                    text = " ".join([*entry_words[:n], misspelt, *entry_words[n + 1 :]])
                    if phrases.check(text, lang) is None:
                        missed.append(text)
    assert missed == []


@pytest.mark.parametrize("lang", LANGS)
def test_both_languages_are_checked_whatever_the_chosen_one(
    phrases: RiskPhrases, lang: str
) -> None:
    assert phrases.check("I want to die", lang) == RiskMatch("suicide", "want to die", "en")
    assert phrases.check("dw i eisiau marw", lang) == RiskMatch("suicide", "eisiau marw", "cy")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "killing time by myself",  # no stemming, and at most one filler in two words
        "at the end of it all I got a job",  # a filler may not be a gap stop ("of")
        "I'm in danger of losing my flat",  # not_risk
        "my officer is killing it",
        "I cut myself off from old friends",
        "mewn perygl o golli fy fflat",
        "this food is to die for",
        "dw i'n lladd amser",
        "the hell with it",
        "what the hell is going on",
        "she'll be fine, we'll see",
        "my mum'll kill me if I'm late",  # as "my mum will kill me": hyperbole
        "I'd kill for a coffee",
        "he beat me to it",  # not_risk
        "I feel like I'm dying of boredom",  # not_risk
        "in the end things got better",
        "x" * 10_000,
    ],
)
def test_ordinary_readings(phrases: RiskPhrases, text: str) -> None:
    assert phrases.check(text, "en") is None


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400), lang=st.sampled_from([*LANGS, "fr", ""]))
def test_check_never_raises(phrases: RiskPhrases, text: str, lang: str) -> None:
    result = phrases.check(text, lang)
    assert result is None or result.category in CATEGORIES


WORDISH = st.sampled_from(
    ["kill", "my", "self", "myself", "want", "to", "die", "i", "ladd", "fy", "hun", "not",
     "safe", "\u200b", "\u202e", "\U0001f62d", "ll", "'", "-", "  ", "selfharm", "a"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(WORDISH, max_size=60))
def test_check_never_raises_on_near_misses(phrases: RiskPhrases, parts: list[str]) -> None:
    phrases.check(" ".join(parts), "cy")


@settings(max_examples=200, deadline=None)
@given(before=st.lists(WORDISH, max_size=20), after=st.lists(WORDISH, max_size=20))
def test_a_whole_phrase_among_near_misses_is_found(
    phrases: RiskPhrases, before: list[str], after: list[str]
) -> None:
    """Whatever surrounds it, a listed phrase as its own words is never missed."""
    text = " ".join([*before, ".", "i want to die", ".", *after])
    found = phrases.check(text, "en")
    assert found is not None and found.category in CATEGORIES


def test_a_long_paste_does_not_hang_the_check(phrases: RiskPhrases) -> None:
    """A guard against catastrophic backtracking (minutes or more on 10,000 characters),
    not a speed test: speed is measured in bench/. The bound is far beyond a slow machine."""
    pastes = [
        ("kill my " * 1300)[:10_000],
        ("a" * 9_999) + " want to die",
        "".join(chr(0x590 + (i * 7) % 0x2000) for i in range(10_000)),
        "The course was good and my officer listened. " * 220,
    ]
    for paste in pastes:
        started = time.perf_counter()
        phrases.check(paste, "en")
        assert time.perf_counter() - started < 10.0
    assert phrases.check(pastes[1], "en") is not None


def test_the_shipped_file_has_both_languages_in_every_category(phrases: RiskPhrases) -> None:
    for lang in LANGS:
        assert {category for category, _ in phrases.entries(lang)} == set(CATEGORIES)


def test_the_shipped_file_has_no_translatable_texts() -> None:
    with PHRASES_PATH.open("rb") as handle:
        texts = [text for _, _, text, _ in extract_dialogue_yaml(handle, None, None, None)]
    assert len(texts) == 1  # only the explain button label every file yields


# --- the file format --------------------------------------------------------------------

GOOD = """\
schema_version: 1
id: safeguarding
lists:
  suicide:
    en: [kill myself]
    cy: [lladd fy hun]
  self_harm: {en: [self harm], cy: [niweidio fy hun]}
  harm_to_others: {en: [hurt someone], cy: [brifo rhywun]}
  immediate_danger: {en: [not safe at home], cy: [ddim yn ddiogel]}
not_risk:
  en: [killing time]
shorthand:
  en: {wanna: want to}
gap_stops:
  en: [of]
"""


def test_a_minimal_file_parses() -> None:
    phrases = RiskPhrases.parse(GOOD, "x.yaml")
    assert phrases.check("i will KILL my self", "en") == RiskMatch("suicide", "kill myself", "en")
    assert phrases.entries("cy")[0] == ("suicide", "lladd fy hun")


@pytest.mark.parametrize(
    ("old", "new", "line", "problem"),
    [
        ("id: safeguarding", "id: [", 4, "not valid YAML"),  # where the parser noticed
        ("schema_version: 1", "schema_version: 2", 1, "'schema_version' must be 1"),
        ("id: safeguarding", "id: themes", 2, "'id' must be safeguarding"),
        ("id: safeguarding", "id: safeguarding\nsay: hello", 3, "unknown key 'say'"),
        ("  suicide:\n", "  suicides:\n", 4, "unknown category 'suicides'"),
        ("    cy: [lladd fy hun]\n", "", 4, "suicide: missing cy"),
        ("    cy: [lladd fy hun]", "    cy: [lladd fy hun]\n    fr: [x]", 7, "unknown language"),
        ("en: [kill myself]", "en: kill myself", 5, "must be a list"),
        ("en: [kill myself]", "en: [{a: b}]", 5, "each entry must be text"),
        ("en: [kill myself]", "en: [kill myself, '']", 5, "has no words"),
        ("en: [kill myself]", "en: ['...']", 5, "has no words"),
        ("en: [kill myself]", "en: [kill myself, 'Kill  MYSELF!']", 5, "repeats the entry"),
        ("en: [killing time]", "en: [killing time, kill myself]", 11, "repeats the entry"),
        ("en: [killing time]", "en: [killing time, safe at]", 9, "never be signposted"),
        ("{wanna: want to}", "{wanna me: want to}", 13, "must be one word"),
        ("{wanna: want to}", "{wanna: ''}", 13, "must be one word"),
        ("en: [of]", "en: [of course]", 15, "must be one word"),
    ],
)
def test_bad_files_name_the_line(old: str, new: str, line: int, problem: str) -> None:
    assert old in GOOD
    with pytest.raises(ValueError, match=r"^x\.yaml:(\d+): ") as caught:
        RiskPhrases.parse(GOOD.replace(old, new, 1), "x.yaml")
    assert str(caught.value).startswith(f"x.yaml:{line}: ")
    assert problem in str(caught.value)


def test_missing_parts_are_reported() -> None:
    with pytest.raises(ValueError, match=r"^x\.yaml:1: the file is empty"):
        RiskPhrases.parse("", "x.yaml")
    with pytest.raises(ValueError, match=r"^x\.yaml:3: lists: missing self_harm"):
        RiskPhrases.parse(GOOD.replace("  self_harm: {en: [self harm], cy: [niweidio fy hun]}\n",
                                       ""), "x.yaml")  # fmt: skip
    with pytest.raises(ValueError, match=r"^x\.yaml:1: missing 'lists'"):
        RiskPhrases.parse("schema_version: 1\nid: safeguarding\n", "x.yaml")


# --- python -m bot safeguarding check -----------------------------------------------------


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot")
    safeguarding_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_check_prints_one_json_line_per_input_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["my officer Bryn was great", "i want to kill myslef", "", "dwi ddim yn ddiogel"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert safeguarding_cli.main(_cli_args("safeguarding", "check", "--lang", "cy")) == 0
    out = capsys.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == [
        {"line": 1, "signposted": False, "category": None, "entry": None, "lang": None},
        {"line": 2, "signposted": True, "category": "suicide", "entry": "kill myself",
         "lang": "en"},
        {"line": 3, "signposted": False, "category": None, "entry": None, "lang": None},
        {"line": 4, "signposted": True, "category": "immediate_danger",
         "entry": "dw i ddim yn ddiogel", "lang": "cy"},
    ]  # fmt: skip
    for secret in ("Bryn", "myslef", "dwi"):
        assert secret not in out


def test_check_reads_bytes_that_are_not_utf8(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"\xff\xfe want to die\r\nfine\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert safeguarding_cli.main(_cli_args("safeguarding", "check")) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["line"], row["signposted"]) for row in out] == [(1, True), (2, False)]


def test_check_reports_a_broken_phrase_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "safeguarding.yaml"
    broken.write_text(GOOD.replace("schema_version: 1", "schema_version: 9"), "utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO("want to die\n"))
    args = _cli_args("safeguarding", "check", "--phrases", str(broken))
    assert safeguarding_cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {broken}:1: 'schema_version' must be 1\n"
    assert safeguarding_cli.main(_cli_args("safeguarding", "check"), dialogues_dir=tmp_path) == 2


def test_the_parser_rejects_other_languages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _cli_args("safeguarding", "check", "--lang", "fr")
    assert "invalid choice" in capsys.readouterr().err

"""Scrubbing quotes: every kind of identifying detail, what must stay, and that scrub is
total and idempotent. Every name, number and address here is invented (Ofcom drama numbers,
example.com, made-up streets)."""

from __future__ import annotations

import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.scrub import scrub

# A bound only a hang (catastrophic backtracking) reaches, on any machine.
HANG = 10.0

SCRUBBED = [
    # emails and handles
    ("email me at jo.bloggs@example.com please", "email me at [email] please"),
    ("J.Bloggs+probation@mail.example.co.uk", "[email]"),
    ("my telegram is @dave_smith99", "my telegram is [name]"),
    # phone numbers
    ("call 07700 900123", "call [phone]"),
    ("07700900123", "[phone]"),
    ("ring 07700-900-123 after 5", "ring [phone] after 5"),
    ("+44 7700 900123", "[phone]"),
    ("+447700900123.", "[phone]."),
    ("+44 (0)7700 900 123", "[phone]"),
    ("0161 496 0000 is the office", "[phone] is the office"),
    ("(0161) 496-0000", "[phone]"),
    ("020 7946 0000", "[phone]"),
    ("029 2018 0000 (Cardiff office)", "[phone] (Cardiff office)"),
    ("0044 20 7946 0000", "[phone]"),
    # postcodes
    ("I moved to CF10 1AA last week", "I moved to [postcode] last week"),
    ("sw1a 1aa", "[postcode]"),
    ("M1 1AE.", "[postcode]."),
    ("LL551AA", "[postcode]"),
    # street addresses
    ("I live at 12 Bute Street now", "I live at [address] now"),
    ("flat 3, 45 High Rd", "[address]"),
    ("Flat 2b 7 Church Lane, Swansea", "[address], Swansea"),
    # a street without its number, written as a street's name is
    ("I live on Elm Road now", "I live on [address] now"),
    ("the hostel on Queen Street in Rhyl", "the hostel on [address] in Rhyl"),
    # a name after "called" or "named", however it is typed; a title after a role
    ("my PO is called precious", "my PO is called [name]"),
    ("my PO is named kasia", "my PO is named [name]"),
    ("ei enw yw precious", "ei enw yw [name]"),  # Welsh "name": never a verb
    ("my PO Ms. Kowalczyk is fine", "my PO [name] is fine"),
    ("22a st mary's road", "[address]"),
    ("4 Park Drive is damp", "[address] is damp"),
    ("12 heol y bont", "[address]"),
    ("3 Stryd Fawr, Bangor", "[address], Bangor"),
    ("fflat 1, 10 Ffordd Pen-y-lan", "[address]"),
    # case and reference numbers
    ("my CRN is X123456", "my CRN is [number]"),
    ("crn x123456", "crn [number]"),
    ("PNC 2019/0123456A", "PNC [number]"),
    ("19/123456Z", "[number]"),
    ("NOMIS A1234BC", "NOMIS [number]"),
    ("NI number QQ123456C", "NI number [number]"),
    ("QQ 12 34 56 C", "[number]"),
    ("reference 12345678", "reference [number]"),
    ("ref AB12345", "ref [number]"),
    # names after cues
    ("my officer Sarah was great", "my officer [name] was great"),
    ("a man called John helped me", "a man called [name] helped me"),
    ("Mr Patel listens", "[name] listens"),
    ("Ms Jones and Dr. Smith", "[name] and [name]"),
    ("mr okonkwo was kind", "[name] was kind"),
    ("PO Dave is sound", "PO [name] is sound"),
    ("my probation officer is Claire Evans", "my probation officer is [name]"),
    ("my officer is called Bryn", "my officer is called [name]"),
    ("My officer, Gwen, is great", "My officer, [name], is great"),
    ("my son Jake's school", "my son [name]'s school"),
    ("my officer May", "my officer [name]"),
    ("Mrs April Jones", "[name]"),
    ("fy swyddog Siân", "fy swyddog [name]"),
    ("fy swyddog prawf yw Dafydd", "fy swyddog prawf yw [name]"),
    ("fy ngweithiwr Tegid", "fy ngweithiwr [name]"),
    # names from the list, any case
    ("sarah helped me a lot", "[name] helped me a lot"),
    ("thanks to RHYS", "thanks to [name]"),
    ("diolch i Ffion a Sian", "diolch i [name] a [name]"),
    ("Siôn and Siân", "[name] and [name]"),
    ("Sia\u0302n was kind", "[name] was kind"),  # the accent typed as a combining mark
    ("I spoke to Grace yesterday", "I spoke to [name] yesterday"),
    ("Dave Smith-Jones rang", "[name] rang"),
    ("Jones was fair", "[name] was fair"),
    ("Mary-Jane from the hostel", "[name] from the hostel"),
]

UNCHANGED = [
    "I have 2 kids",
    "The Road to recovery is long",  # "The" is not a street's name
    "they called me names and it got called off",  # "called" with its everyday words
    "I was called a liar",
    "I called yesterday but nobody answered",  # "called" alone: only a capitalised name
    "the course is called thinking skills",
    "my officer never listens",  # after a role, only a capitalised word or a known name
    "week 12 of the course",
    "I live in a hostel",
    "May was hard",  # the month: May, June, April, August are months unless after a cue
    "In May I got a job, and in June a flat",
    "Grace was shown to me",  # an everyday word starting a sentence
    "will you call me back",
    "I miss my kids",
    "the dr said I was fine",
    "I called Samaritans and my mum",
    "my officer is great",
    "my officer is Welsh",
    "2 hours drive from home",
    "spent 3 days in the park",
    "£120 a week on travel",
    "appointments at 10:30 on 12/03/2025",
    "24/7 support",
    "the M4 is always busy",
    "I live in Cardiff",
    "mae 2 ffordd o wneud hyn",
    "dw i'n byw mewn hostel",
    "Number 10 bus is late",
    "my score was 5 out of 5",
    "the course was 3 weeks",
    "MY OFFICER IS GREAT",
    "hope this helps",
]


@pytest.mark.parametrize(("text", "expected"), SCRUBBED)
def test_identifying_details_are_scrubbed(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_words_and_numbers_stay(text: str) -> None:
    assert scrub(text) == text


def test_the_rest_of_a_long_answer_is_kept() -> None:
    text = (
        "My officer Sarah (07700 900123) moved me to 12 Bute Street, CF10 1AA. "
        "Week 12 was hard but the group helped."
    )
    assert scrub(text) == (
        "My officer [name] ([phone]) moved me to [address], [postcode]. "
        "Week 12 was hard but the group helped."
    )


@pytest.mark.parametrize(
    "paste", ["a" * 10_000, "-" * 10_000, "1" * 10_000, "x@" * 5_000, "Aa " * 3_333, "0 " * 5_000]
)
def test_a_long_paste_does_not_hang_the_scrubber(paste: str) -> None:
    """A guard against catastrophic backtracking (minutes or more on 10,000 characters),
    not a speed test: speed is measured in bench/. The bound is far beyond a slow machine."""
    started = time.perf_counter()
    scrub(paste)
    assert time.perf_counter() - started < HANG


def test_the_table_is_big_enough() -> None:
    assert len(SCRUBBED) >= 40


FRAGMENTS = st.sampled_from(
    ["Sarah", "sarah", "Grace", "May", "Mr", "mr", "Dr.", "officer", "called", "is", "my",
     "PO", "fy swyddog", "Siân", "Evans", "Street", "Rd", "Heol", "y", "flat", "12", "3,",
     "07700", "900123", "+44", "(0)", "0161", "CF10", "1AA", "X123456", "2019/0123456A",
     "A1234BC", "QQ123456C", "1234567", "@", "a@b.co", "example.com", "[name]", "[", "]",
     "'s", ",", ".", "\n", " ", "-", "\u200b", "\u202e", "\U0001f62d", "ß", "İ", "ǅ", "\u0302",
     "Sia\u0302n"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=300))
@example("Mr Xyz is Abc")
@example("Sarah Jones Evans Davies")
@example("0 7700 900123 4")
def test_scrub_never_raises_and_is_idempotent(text: str) -> None:
    once = scrub(text)
    assert scrub(once) == once


@settings(max_examples=600, deadline=None)
@given(parts=st.lists(FRAGMENTS, max_size=25), spaces=st.lists(st.sampled_from(["", " "])))
def test_scrub_is_idempotent_on_near_misses(parts: list[str], spaces: list[str]) -> None:
    text = "".join(part + (spaces[i] if i < len(spaces) else " ") for i, part in enumerate(parts))
    once = scrub(text)
    assert scrub(once) == once


@settings(max_examples=300, deadline=None)
@given(before=st.lists(FRAGMENTS, max_size=10), after=st.lists(FRAGMENTS, max_size=10))
def test_a_planted_phone_number_and_email_never_survive(
    before: list[str], after: list[str]
) -> None:
    """Whatever surrounds them, a phone number and an email address are taken out (the
    idempotence tests above pass for a scrubber that takes nothing out)."""
    text = " ".join([*before, "call 07700 900456 or write to ffion@example.org", *after])
    scrubbed = scrub(text)
    assert "900456" not in scrubbed and "ffion@" not in scrubbed

"""Scrubbing a free-text answer before it is kept for quoting in reports.

A quote in a manager's report must not let anyone work out who said it, or who they talked
about: being on probation is criminal offence data. So names, phone numbers, emails, postcodes,
street addresses and case or reference numbers become [name], [phone], [email], [postcode],
[address] and [number]; everything else is kept as written. Over-scrubbing a harmless word
costs a little meaning; leaving a name could cost someone a lot, so the rules lean to
scrubbing. Pure, total (never raises) and idempotent: scrub(scrub(x)) == scrub(x).

Decisions:
- Names are found three ways: after a cue ("my officer Sarah", "called John", "Mr Patel",
  "PO Dave", "fy swyddog Siân", "my probation officer is Claire Evans"); from a built-in list
  of common first names (any case, "siân", "SARAH"); and from a short list of common surnames
  (capitalised only). A capitalised word right after a name is taken as its surname.
- First names that are also ordinary words ("Will", "Grace", "Bill", "Rose"; Welsh "Seren",
  "Bryn", "Gwen") count only when capitalised and not the first word of a sentence.
- May, June, April and August are month names first: "May was hard" and "in June" stay. They
  are scrubbed only after a cue or title ("my officer May", "Mrs April Jones").
- After a role and "is called" or "named" the next word is a name however it is typed
  ("my PO is called precious"), unless it is one "called" is used with ("called me names").
  After "called" alone ("I called yesterday", "a course called thinking skills") only a
  capitalised or listed name is.
  After a role ("my officer") only a capitalised or listed name is: "my officer never
  listens" keeps "never", so "my officer rahul" keeps "rahul" (an unlisted name in lower
  case), a known gap. A title after a role takes the title's rule ("my PO Ms. Kowalczyk").
- A street is scrubbed without its number when written as a name ("on Elm Road").
- Towns and cities are kept: they say little about one person among 240,000.
- Postcodes must be complete ("CF10 1AA"); a district alone ("CF10") is kept, so "the M4" is.
"""

from __future__ import annotations

import re

from bot.text_match import normalise


def _word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of a block of text (keeps long word lists short)."""
    return frozenset(text.split())


_FIRST_NAMES = _word_set(
    """
    aaron adam adrian aidan alan alex alexander alfie ali andrew andy anthony antony archie
    arthur ashley barry benjamin billy bradley brandon brian callum calum cameron carl charles
    charlie chris christopher colin connor conor craig daniel danny darren dave david declan
    dennis derek dominic dylan eddie edward elliot elliott ethan finley finn gary gavin george
    gordon graham greg gregory harry harvey henry ian isaac jackson jacob jake jamal james jamie
    jason jayden jeff jeremy jim jimmy joe joel john johnny jon jonathan jordan joseph josh
    joshua jude julian justin kai karl keith kenny kenneth kevin kieran kyle lee leo leon
    leonard liam logan louis luke malcolm marcus mario martin mason matt matthew michael mike
    mohammed mohammad muhammad mohamed nathan neil nigel noah oliver ollie oscar owen patrick
    paul peter phil philip raymond reece richard ricky robert robbie roger ronnie ross russell
    ryan sam samuel scott sean shane shaun simon stanley stephen steve steven stuart terry theo
    thomas tim timothy toby tom tommy tony trevor tyler vincent warren wayne william zach
    zachary zak ahmed hassan imran omar tariq usman bilal kamal asif arjun rohan ravi sanjay
    vijay piotr tomasz marek pawel andrei mihai kwame kofi tyrone marlon dwayne leroy delroy
    abigail abbie aimee alice alison amanda amelia amy andrea angela anna anne annie ava barbara
    beth bethany brenda bridget caitlin carly caroline catherine charlotte chloe christine
    claire clare courtney danielle debbie deborah demi denise diane donna eleanor elizabeth ella
    ellie emily emma erin evie fiona freya gemma georgia gillian hannah harriet hayley isabel
    isabella isla jackie jacqueline jane janet jasmine jennifer jenny jess jessica joanne jodie
    josephine julie karen kate katie kayleigh kelly kerry kim kirsty laura lauren leah linda
    lisa lorraine louise lucy lydia lynne maddie maisie margaret maria marie martha mary megan
    melanie melissa mia michelle millie molly natalie natasha nicola nicole olivia paige pauline
    phoebe rachel rebecca samantha sandra sara sarah sharon shannon shauna sophie sophia stacey
    stephanie susan suzanne tanya tara teresa tracey tracy valerie vanessa vicky victoria wendy
    yvonne zoe aisha fatima ayesha amina zainab priya anita sunita agnieszka katarzyna magdalena
    aled alun aneurin angharad arwel bethan bleddyn branwen carwyn catrin cerys carys ceri
    dafydd delyth dewi dilys dyfan eifion eirlys eleri elen elin elis emlyn emrys emyr eurig
    ffion gareth geraint gethin gruffydd gwenllian gwion gwilym heledd heulwen huw hywel ianto
    idris iestyn ieuan ifan ifor iolo ioan iwan lowri llinos llyr lleucu mabli mair manon meinir
    meirion mererid morgan nerys nia olwen osian owain rhian rhiannon rhodri rhydian rhys sian
    sioned sion steffan tomos trystan tudur mali efa elliw gwenno caryl glenys nesta elgan
    berwyn cledwyn islwyn peredur macsen
    """
)
# Names that are also everyday English or Welsh words: only when capitalised mid-sentence.
_WORD_NAMES = _word_set(
    """
    will bill mark frank rich pat sue dawn rose grace hope faith joy amber holly ivy ruby daisy
    lily jade penny summer autumn sky ray drew guy chase max don gene art carol nick bob jean
    ben dan di jo al ed eve iris robin rob jay jack miles heather hazel poppy violet olive pearl
    tegan nest bryn glyn gwyn wyn gwen eira seren hedd non cai dai alaw
    """
)
_SURNAMES = _word_set(
    """
    jones williams davies evans roberts hughes lewis griffiths edwards price jenkins phillips
    rees powell pritchard llewellyn bowen parry pugh vaughan watkins smith taylor johnson wilson
    robinson thompson walker clarke harris jackson patel khan hussain begum singh kaur murphy
    kelly o'brien anderson campbell stewart mitchell robertson cooper morris harrison
    """
)
_TITLES = frozenset({"mr", "mrs", "ms", "mx", "miss", "dr", "prof", "parch"})
_NAME_ONLY_TITLES = frozenset({"mr", "mrs", "ms", "mx"})
# Words after which a capitalised word is a name: roles, relations, "called".
_CUES = _word_set(
    """
    officer po om worker keyworker caseworker mentor counsellor counselor therapist psychologist
    tutor solicitor manager supervisor called named name mate friend partner girlfriend
    boyfriend wife husband son daughter brother sister mum mom dad nan gran grandad uncle aunt
    auntie cousin ex fiance fiancee boss neighbour swyddog gweithiwr ngweithiwr weithiwr enw
    ffrind
    """
)
_CONNECTORS = frozenset({"is", "was", "called", "named", "yw", "ydy", "ydi", "oedd", "i"})
# Cues after which the next word is a name whatever its case ("is called precious")...
_NAMING = frozenset({"called", "named", "enw"})
# ...but not these, which "called" is used with too ("they called me names", "called off").
_NOT_CALLED = _word_set(
    """
    me him them us one someone somebody everyone everybody anyone anybody nobody names
    out up back off round around over after again about for everything nothing all both
    police ambulance help home names stupid useless thick lazy liar
    """
)
# Capitalised words that are not names, even after a cue or a name.
_NOT_NAMES = _word_set(
    """
    i i'm i've i'd i'll the a an and but or so he she they we you it my his her our their is was
    has had not no yes on in at to from with because when then this that there what who
    probation police court nhs samaritans council jobcentre universal credit service team office
    officer mum dad nan gran god monday tuesday wednesday thursday friday saturday sunday
    january february march july september october november december christmas easter welsh
    english british scottish irish polish cymraeg saesneg
    """
)

# Each pattern starts only where its run of characters starts, so a 10,000-character paste
# with no match costs one pass, not one per character.
_EMAIL = re.compile(r"(?<![\w.+'\]-])[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
# The lookbehinds below do not rule out letters or "]" alone: a name just before would be
# replaced by "[name]" later, and a second scrub must see the same thing as the first.
_HANDLE = re.compile(r"(?<![\w@\]])@[A-Za-z]\w{3,}")
# +44 or 0, then 9-10 more digits, allowing spaces, dashes, dots and brackets between them.
_PHONE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)\s?44\s?(?:\(0\)\s?)?|\(0(?=\d{2,4}\))|0)"
    r"(?:\d[ \t\u00a0.\-)]{0,2}){8,9}\d(?!\d)"
)
_CASE_NUMBERS = (
    re.compile(r"(?<![\w/])\d{2}(?:\d{2})?/\d{1,7}[A-Za-z](?!\w)"),  # PNC 2019/0123456A
    re.compile(r"(?<!\w)[A-Z]{2}(?: \d{2}){3}(?: [A-D])?(?!\w)"),  # NI QQ 12 34 56 C
    re.compile(r"(?<!\w)[A-Za-z]{2}\d{6}[A-Da-d]?(?!\w)"),  # NI QQ123456C
    re.compile(r"(?<!\w)[A-Za-z]\d{4}[A-Za-z]{2}(?!\w)"),  # NOMIS A1234BC
    re.compile(r"(?<!\w)[A-Za-z]{1,3}\d{5,}[A-Za-z]{0,3}(?!\w)"),  # CRN X123456, other refs
)
_POSTCODE = re.compile(r"(?<!\w)[A-Za-z]{1,2}\d[A-Za-z\d]?[ \t]*\d[A-Za-z]{2}(?!\w)")
_DIGITS = re.compile(r"(?<![^\W_])[^\W_]*?\d{6,}[^\W_]*")  # the whole word: "AB1234567C"

_STOPWORDS = (
    r"(?:the|a|an|of|in|on|at|to|for|with|my|your|his|her|our|their|and|or|by|from|"
    r"days?|weeks?|months?|years?|hours?|minutes?|times?|miles?|kids|people)\b"
)
_NAME_WORD = rf"(?!{_STOPWORDS})[^\W\d_][\w'’-]*"
_NUMBER = (
    r"(?<![\w£$€.])(?:(?:flat|apartment|apt|unit|room|fflat|uned)\.?\s*\d{1,4}[a-z]?\s*,?\s*)?"
    r"\d{1,4}[a-z]?,?\s+"
)
# Street kinds that are also ordinary words ("2 hours drive") need a capital somewhere.
_PLAIN_KINDS = "street|road|avenue|lane|crescent|boulevard|terrace"
_WORDY_KINDS = (
    "st|rd|ave|ln|dr|drive|close|cl|court|ct|way|place|pl|grove|gardens|gdns|park|square|sq|"
    "hill|row|walk|mews|view|rise|parade|green|vale|heights|cres|estate"
)
_ADDRESS = re.compile(
    rf"{_NUMBER}(?P<name>(?:{_NAME_WORD}\s+){{1,3}}?)(?P<kind>{_PLAIN_KINDS}|{_WORDY_KINDS})\b\.?",
    re.IGNORECASE,
)
# A street named without its number ("I live on Elm Road", "the hostel on Queen Street"):
# the kind and the words before it capitalised, as a street's name is written.
_UNNUMBERED_ADDRESS = re.compile(
    rf"(?<![\w\[])(?:(?!(?i:{_STOPWORDS}))[A-Z][\w'’-]*[ \t]+){{1,3}}"
    r"(?:Street|Road|Avenue|Lane|Crescent|Terrace|Drive|Grove|Gardens)\b"
)
_WELSH_ADDRESS = re.compile(
    rf"{_NUMBER}(?P<kind>heol|stryd|ffordd|l[oô]n|rhodfa|cilgant|teras|clos|maes|llys)\s+"
    r"(?P<rest>(?:(?:y|yr)\s+)?[^\W\d_][\w'’-]*)",
    re.IGNORECASE,
)
# Whole words, digits included, so "CF10" is one word (and not a name); with accents typed
# as separate combining marks ("Sia\u0302n"), which \w does not match.
_LETTER = "(?:[^\\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])"
_WORD = re.compile(rf"[^\W_]{_LETTER}*(?:['’-][^\W_]{_LETTER}*)*")
_PARTS = re.compile(r"[- ]")
_SPACE = re.compile(r"[ \t]+")
_CUE_GAP = re.compile(r"[ \t]*[,:]?[ \t]+")
_TITLE_GAP = re.compile(r"\.?[ \t]+|\.")


def scrub(text: str) -> str:
    """The text with identifying details replaced by [email], [phone], [number], [postcode],
    [address] and [name]; the rest as written."""
    text = _EMAIL.sub("[email]", text)
    text = _HANDLE.sub("[name]", text)
    text = _PHONE.sub("[phone]", text)
    for pattern in _CASE_NUMBERS:
        text = pattern.sub("[number]", text)
    text = _POSTCODE.sub("[postcode]", text)
    text = _ADDRESS.sub(_english_address, text)
    text = _UNNUMBERED_ADDRESS.sub("[address]", text)
    text = _WELSH_ADDRESS.sub(_welsh_address, text)
    text = _DIGITS.sub("[number]", text)
    return _scrub_names(text)


def _english_address(match: re.Match[str]) -> str:
    kind = match["kind"].rstrip(".").lower()
    if kind in _PLAIN_KINDS.split("|") or any(c.isupper() for c in match[0]):
        return "[address]"
    return match[0]


def _welsh_address(match: re.Match[str]) -> str:
    """Welsh street words come first ("Heol y Bont"); but "2 ffordd o" is "2 ways of"."""
    rest = match["rest"]
    if match["kind"][0].isupper() or rest[0].isupper() or " " in rest:
        return "[address]"
    return match[0]


def _key(token: str) -> str:
    """A word as the name lists hold it: lower case, no accents, no possessive 's."""
    key = normalise(token)
    return key[:-2] if key.endswith("'s") else key


def _capitalised(token: str) -> bool:
    """Starts with a capital, and is not shouted in capitals throughout."""
    return token[0].isupper() and not (len(token) > 1 and token.isupper())


def _is_name(token: str, after_cue: bool, sentence_start: bool) -> bool:
    """Listed first names in any case; otherwise only capitalised words: after a cue any
    (but not "I", "Monday", "Probation"), else surnames, and word-names mid-sentence."""
    if any(c.isdigit() for c in token):
        return False
    key = _key(token)
    parts = _PARTS.split(key)
    if any(part in _FIRST_NAMES for part in parts):
        return True
    if not _capitalised(token) or key in _NOT_NAMES:
        return False
    return (
        after_cue
        or any(part in _SURNAMES for part in parts)
        or (key in _WORD_NAMES and not sentence_start)
    )


def _sentence_start(text: str, start: int) -> bool:
    k = start - 1
    while k >= 0 and text[k] in " \t\"'“‘(":
        k -= 1
    return k < 0 or text[k] in ".!?\n…:"


class _Words:
    """The words of a text with where they are, to find runs of name words."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]

    def word(self, i: int) -> str:
        return self.text[self.spans[i][0] : self.spans[i][1]]

    def follows(self, i: int, gap: re.Pattern[str]) -> bool:
        """Word i+1 exists and comes straight after word i, with only `gap` between."""
        if i + 1 >= len(self.spans):
            return False
        return gap.fullmatch(self.text[self.spans[i][1] : self.spans[i + 1][0]]) is not None

    def name_at(self, i: int) -> tuple[int, int] | None:
        """(start offset, last word) of a name beginning at word i, its cue or title
        included only for titles ("Mr Patel" -> [name], "my officer [name]")."""
        word, key = self.word(i), _key(self.word(i))
        if key in _TITLES and (key != "miss" or word == "Miss"):
            if self.follows(i, _TITLE_GAP):
                name = self.word(i + 1)
                # "mr", "mrs", "ms", "mx" are only ever followed by a name; "dr" is not.
                if _is_name(name, True, False) or (
                    key in _NAME_ONLY_TITLES
                    and _key(name) not in _NOT_NAMES
                    and not any(c.isdigit() for c in name)
                ):
                    return self.spans[i][0], self.extend(i + 1)
            return None
        if key in _CUES and (key not in {"po", "om"} or word.isupper()):
            j = i
            # After a role and "is called" or "named" a name is what comes, however it is
            # typed ("my PO is called precious"); after a role alone, or "called" alone
            # ("I called yesterday", "the course is called thinking skills"), only a
            # capitalised word or a listed name ("my officer never listens" keeps "never").
            strong = key == "enw"  # Welsh "name" ("ei enw yw ..."): never a verb
            role = key not in _NAMING and key != "name"
            while j - i < 3 and self.follows(j, _CUE_GAP):
                name = self.word(j + 1)
                if _key(name) in _TITLES:  # "my PO Ms. Kowalczyk": the title's own rule
                    return self.name_at(j + 1)
                if _is_name(name, True, False) or (strong and self._plain_word(j + 1)):
                    return self.spans[j + 1][0], self.extend(j + 1)
                if _key(name) not in _CONNECTORS:
                    break
                strong = strong or (role and _key(name) in _NAMING)
                j += 1
            return None
        if _is_name(word, False, _sentence_start(self.text, self.spans[i][0])):
            return self.spans[i][0], self.extend(i)
        return None

    def _plain_word(self, i: int) -> bool:
        """Word i could be a name typed in lower case: letters, not a word of the sentence's
        frame ("the", "is", "a"), and not what scrubbing wrote ("[name]")."""
        word, start = self.word(i), self.spans[i][0]
        key = _key(word)
        return (
            word.isalpha()
            and len(word) > 1
            and key not in _NOT_NAMES
            and key not in _CONNECTORS
            and key not in _NOT_CALLED
            and re.fullmatch(_STOPWORDS, key) is None
            and (start == 0 or self.text[start - 1] != "[")
        )

    def extend(self, i: int) -> int:
        """The last word of the name starting at word i: capitalised words straight after
        it ("Claire Evans") are its surname."""
        while self.follows(i, _SPACE):
            word = self.word(i + 1)
            key = _key(word)
            if any(c.isdigit() for c in word) or not (
                key in _FIRST_NAMES
                or key in _SURNAMES
                or (_capitalised(word) and key not in _NOT_NAMES and key not in _CUES)
            ):
                break
            i += 1
        return i

    def end_of(self, i: int) -> int:
        """Where word i ends, leaving a possessive 's outside: "[name]'s"."""
        start, end = self.spans[i]
        word = self.text[start:end]
        return end - 2 if len(word) > 2 and word[-2] in "'’" and word[-1] in "sS" else end


def _scrub_names(text: str) -> str:
    """Replace each run of name words with [name], reading the words left to right."""
    found = _Words(text)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(found.spans):
        name = found.name_at(i)
        if name is None:
            i += 1
            continue
        start, last = name
        spans.append((start, found.end_of(last)))
        i = last + 1
    parts, done = [], 0
    for start, end in spans:
        parts += [text[done:start], "[name]"]
        done = end
    return "".join([*parts, text[done:]])

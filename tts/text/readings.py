"""How each kind of token is read aloud: the ``speak`` functions of ``normalize.RULES``.

Each takes a regex match (group names as in the rule's pattern) and returns normalized
words, or None to leave the match to later rules. The match's whole string is the text
as it stands when the rule runs, which is what the context checks ("St." before a name,
"1984" after "in") look at. Number spelling itself is in ``numbers``.
"""

from __future__ import annotations

import functools
import re

from . import numbers as nb

# --- context ---------------------------------------------------------------------------------

# Words that begin a new sentence rather than a name: "Main St. Then ..." ends a sentence,
# "St. Louis" does not.
SENTENCE_STARTERS = frozenset(
    "an and as at but by each every first for he her here his how however if in it its "
    "let many my next no now of on once our she so some still that the their then there these "
    "they this those today we what when where which while who why yes yet you your".split()
)


def next_word(text: str) -> str:
    m = re.match(r"""[\s"'(\[]*([A-Za-z]+)""", text)
    return m.group(1) if m else ""


def prev_word(text: str) -> str:
    m = re.search(r"([A-Za-z]+)[\s,]*$", text)
    return m.group(1).lower() if m else ""


def at_end(rest: str) -> bool:
    return re.match(r"""[\s"')\]]*$""", rest) is not None


def starts_sentence(rest: str) -> bool:
    """Whether the text after a period reads as a new sentence (capital, not a name)."""
    m = re.match(r"""[\s"'(\[]*([A-Za-z]+)(\s+[a-z])?""", rest)
    if m is None or not m.group(1)[0].isupper():
        return False
    if m.group(1) in ("A", "I"):  # "A new plan", "I think"; but "A. A. Milne" is initials
        return m.group(2) is not None
    return m.group(1).lower() in SENTENCE_STARTERS


# --- abbreviations ---------------------------------------------------------------------------

# Titles precede a name; their period ends a sentence only before a sentence starter.
TITLES = {
    "Mr.": "mister", "Mrs.": "missus", "Ms.": "miz", "Dr.": "doctor", "Prof.": "professor",
    "Gen.": "general", "Capt.": "captain", "Lt.": "lieutenant", "Col.": "colonel",
    "Sgt.": "sergeant", "Cpl.": "corporal", "Maj.": "major", "Adm.": "admiral",
    "Rev.": "reverend", "Hon.": "honorable", "Gov.": "governor", "Sen.": "senator",
    "Rep.": "representative", "Pres.": "president", "Fr.": "father", "Mt.": "mount",
    "Ft.": "fort", "Messrs.": "messieurs", "St.": "saint",
    "Mr": "mister", "Mrs": "missus", "Ms": "miz", "Dr": "doctor", "St": "saint",
}
# These end a sentence when a capitalized word follows ("... Apple Inc. The ...").
FINAL = {
    "Jr.": "junior", "Sr.": "senior", "Inc.": "incorporated", "Ltd.": "limited",
    "Co.": "company", "Corp.": "corporation", "Bros.": "brothers", "Ave.": "avenue",
    "Blvd.": "boulevard", "Rd.": "road", "Ln.": "lane", "Hwy.": "highway", "Sq.": "square",
    "Apt.": "apartment", "Dept.": "department", "Univ.": "university", "etc.": "et cetera",
    "Ph.D.": "P H D", "Ph.D": "P H D", "a.m.": "A M", "p.m.": "P M", "A.M.": "A M", "P.M.": "P M",
}
# These sit inside a sentence; their period ends one only at the end of the text.
INLINE = {
    "e.g.": "for example", "i.e.": "that is", "vs.": "versus", "vs": "versus", "cf.": "compare",
    "viz.": "namely", "approx.": "approximately", "et al.": "et al", "est.": "established",
    "Jan.": "january", "Feb.": "february", "Mar.": "march", "Apr.": "april", "Jun.": "june",
    "Jul.": "july", "Aug.": "august", "Sep.": "september", "Sept.": "september",
    "Oct.": "october", "Nov.": "november", "Dec.": "december", "Mon.": "monday",
    "Tue.": "tuesday", "Tues.": "tuesday", "Wed.": "wednesday", "Thu.": "thursday",
    "Thur.": "thursday", "Thurs.": "thursday", "Fri.": "friday", "Sat.": "saturday",
}
# Lowercase spellings also found capitalized at the start of a sentence ("E.g.", "Etc.").
ANY_CASE = {"e.g.", "i.e.", "vs.", "vs", "cf.", "viz.", "approx.", "et al.", "etc.", "est."}
ABBREVIATIONS = {**TITLES, **FINAL, **INLINE}
# Before a number only: "No. 5", "pp. 10-12".
BEFORE_NUMBER = {
    "no": "number", "nos": "numbers", "p": "page", "pp": "pages", "vol": "volume",
    "fig": "figure", "ch": "chapter", "art": "article", "sec": "section", "ex": "example",
}


def lookup_abbreviation(written: str) -> str | None:
    if written in ABBREVIATIONS:
        return written
    lower = written.lower()
    return lower if lower in ANY_CASE else None


def period_ends(kind: str, rest: str) -> bool:
    if at_end(rest):
        return True
    if not re.match(r"""["')\]]*\s""", rest):  # "etc.," goes on
        return False
    nxt = next_word(rest) or rest.lstrip()[:1]
    if not nxt or nxt[0].islower() or kind == "inline":
        return False
    if kind == "title":  # a title or an initial before a name, unless a new sentence starts
        return starts_sentence(rest)
    return True


def period_ends_sentence(word: str, rest: str) -> bool:
    """Whether the period closing ``word`` ("Dr.", "U.S.", "etc.", "J.", "home.") also ends
    the sentence, given the ``rest`` of the text after it. Shared with the sentence splitter.
    """
    key = lookup_abbreviation(word)
    if key in INLINE:
        kind = "inline"
    elif key in TITLES or (re.fullmatch(r"(?:[A-Za-z]\.)+", word) and word != "I."):
        kind = "title"  # an initial ("J. R. R. Tolkien") or "U.S. Army" may precede a name
    else:
        kind = "final"
    return period_ends(kind, rest)


_STREETS = {"St.": "street", "Dr.": "drive"}


def speak_abbreviation(m: re.Match[str]) -> str | None:
    written = m.group(0)
    key = lookup_abbreviation(written)
    reading, before, rest = ABBREVIATIONS[key], m.string[: m.start()], m.string[m.end() :]
    nxt = next_word(rest)
    name_follows = bool(nxt) and nxt[0].isupper() and nxt.lower() not in SENTENCE_STARTERS
    kind = "final" if key in FINAL else "inline" if key in INLINE else "title"
    if kind == "title" and not name_follows:
        if not written.endswith("."):
            return None  # "Dr" without its period is an abbreviation only before a name
        # "Main St." and "Mulholland Dr." name streets; "the Dr." is still a doctor.
        if key == "St." or (key == "Dr." and re.search(r"[A-Z][a-z]+ $", before)):
            reading, kind = _STREETS[key], "final"
    if written.endswith(".") and period_ends(kind, rest):
        reading += "."
    return reading


def speak_before_number(m: re.Match[str]) -> str:
    return BEFORE_NUMBER[m.group("abbr").lower()]


def speak_dotted_acronym(m: re.Match[str]) -> str:
    """ "U.S.A." -> "U S A", with the period kept where it also ends the sentence."""
    written = m.group(0)
    end = "." if written.endswith(".") and period_ends("title", m.string[m.end() :]) else ""
    return spell(written.replace(".", "")) + end


def speak_initial(m: re.Match[str]) -> str:
    """ "J. Smith" -> "J smith"; "Plan B. Then ..." keeps the period."""
    return m.group("letter") + ("." if starts_sentence(m.string[m.end() :]) else "")


# --- letters, acronyms, addresses ------------------------------------------------------------

# All-caps words read as words, not letters.
WORD_ACRONYMS = frozenset(
    "AIDS ASAP ASCII AWOL BASIC CAPTCHA COBOL COVID DARPA FEMA FIFA GIF IKEA JPEG LASER LED "
    "NAFTA NASA NASDAQ NATO NEET OPEC PIN RADAR RAM ROM SCUBA SIM SONAR SWAT TASER UEFA "
    "UNESCO UNICEF WASP WIFI YOLO".split()
)
# All-caps spellings of ordinary words, written for emphasis ("I am NOT going").
_EMPHASIS = frozenset(
    "A ALL AM AN AND ANY ARE AS AT BAD BE BIG BUT BY CAN DID DO GET GO GOOD GOT HAD HAS "
    "HE HER HIM HIS HOT HOW IF IN IS ME MORE MOST MUCH MUST MY NEED NEVER NEW NO NOT NOW OF "
    "OFF OH ON ONE ONLY OR OUR OUT SHE SO THE THIS TOO TWO UP VERY WAS WAY WE WHO WHY WILL YES "
    "YOU".split()
)
_SPECIAL_WORDS = {"OK": "okay"}
# A spelled acronym's plural or possessive, "CDs" / "FBI's", ends on its last letter's name.
_LETTER_PLURALS = dict(zip(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "ays bees sees dees ease effs jeez aitches eyes jays kays ells emms ens ohs pees cues ars "
    "esses tees ewes vees double_ewes exes whys zees".split(),
))
_VOWELS = set("AEIOUYaeiouy")


def spell(letters: str) -> str:
    return " ".join(letters.upper())


def _pronounceable(word: str) -> bool:
    """Crude test for acronyms said as words: consonant-vowel patterns like NASA, NATO, OPEC."""
    return re.fullmatch(r"[^AEIOU]{0,2}[AEIOU][^AEIOU]{1,2}[AEIOU][^AEIOU]?", word) is not None


@functools.lru_cache(maxsize=8)
def shouting(text: str) -> bool:
    """Whether the text is written mostly in capitals, so capitals mean nothing special."""
    words = re.findall(r"[A-Za-z]{2,}", text)
    caps = sum(w.isupper() for w in words)
    return len(words) >= 4 and caps >= 0.6 * len(words)


def speak_caps(m: re.Match[str]) -> str:
    caps, suffix = m.group("caps"), m.group("suffix") or ""
    if "'" in caps:
        return caps.lower()
    if caps in _SPECIAL_WORDS:
        return _SPECIAL_WORDS[caps] + suffix.lower()
    if caps in ("II", "III") and not suffix:  # "Rocky II"; never an acronym
        return nb.cardinal(len(caps))
    as_word = (
        caps in WORD_ACRONYMS
        or caps in _EMPHASIS
        or (shouting(m.string) and bool(_VOWELS & set(caps)))
        or (len(caps) >= 6 and bool(_VOWELS & set(caps)))
        or (len(caps) >= 4 and _pronounceable(caps))
    )
    if as_word:
        return caps.lower() + suffix.lower()
    if suffix:
        return spell(caps[:-1]) + " " + _LETTER_PLURALS[caps[-1]].replace("_", " ")
    return spell(caps)


def _speak_part(part: str, spell_short: bool = False) -> str:
    """One piece of an address: digits, or letters read as a word or spelled."""
    if part.isdigit():
        return nb.cardinal(int(part)) if len(part) <= 2 else nb.digits(part)
    no_vowel = not (_VOWELS & set(part))
    if len(part) == 1 or no_vowel or (spell_short and len(part) == 2):
        return spell(part)
    return part.lower()


_ADDRESS_SYMBOLS = {
    ".": "dot", "/": "slash", "-": "dash", "_": "underscore", "@": "at", ":": "colon",
    "?": "question mark", "=": "equals", "&": "and", "#": "hash", "+": "plus", "%": "percent",
    "~": "tilde",
}


def read_address(text: str) -> str:
    parts = re.findall(r"[a-z]+|\d+|[^a-z\d]", text.lower())
    tld = parts[-1] if parts else ""
    words = []
    for i, part in enumerate(parts):
        if part in _ADDRESS_SYMBOLS:
            words.append(_ADDRESS_SYMBOLS[part])
        elif part.isalnum():
            is_tld = i == len(parts) - 1 and part is tld and i > 0 and parts[i - 1] == "."
            words.append("W W W" if part.lower() == "www" else _speak_part(part, is_tld))
    return " ".join(words)


def speak_url(m: re.Match[str]) -> str:
    url = re.sub(r"^[A-Za-z]+://", "", m.group(0)).rstrip("/")
    host, _, path = url.partition("/")
    spoken = read_address(host)
    return spoken + (" slash " + read_address(path) if path else "")


# --- Roman numerals --------------------------------------------------------------------------

# Names of monarchs and popes: "Louis XIV" -> "louis the fourteenth".
REGNAL_NAMES = (
    "Alexander Alfonso Alfred Anne Benedict Boniface Catherine Charles Clement Constantine "
    "Edward Elizabeth Ferdinand Francis Frederick George Gregory Gustav Henry Innocent Ivan "
    "James John Leo Louis Mary Napoleon Nicholas Paul Peter Philip Pius Richard Rudolf "
    "Sixtus Urban Victor Wilhelm William"
).split()
# Titles before any name that takes a regnal number: "King Rama IX", "Queen Margrethe II".
SOVEREIGNS = "Czar Duke Emperor Empress King Pope Prince Princess Queen Sultan Tsar".split()
# Words numbered with a cardinal: "Chapter IV" -> "chapter four".
NUMBERED = (
    "Act Appendix Article Book Chapter Episode Level Part Phase Round Scene Season Section "
    "Stage Title Vol. Volume".split() + ["World War", "Super Bowl"]
)


def speak_roman(m: re.Match[str]) -> str | None:
    value = nb.roman_to_int(m.group("roman"))
    if value is None:
        return None
    lead = m.group("lead")
    possessive = "'s" if m.group("poss") else ""
    if lead in REGNAL_NAMES or lead.split()[0] in SOVEREIGNS:
        return f"{lead.lower()} the {nb.ordinal(value)}{possessive}"
    # A single letter after a generic word is more often a letter ("Appendix C").
    if len(m.group("roman")) == 1 and m.group("roman") not in "IVX":
        return None
    lead = lead.lower().replace("vol.", "volume")
    return f"{lead} {nb.cardinal(value)}{possessive}"


# --- numbers in context ---------------------------------------------------------------------

MONTH_NUMBERS = {m.capitalize(): i + 1 for i, m in enumerate(nb.MONTHS)} | {
    m[:3].capitalize(): i + 1 for i, m in enumerate(nb.MONTHS)
} | {"Sept": 9}
SYMBOL_WORDS = {
    "&": "and", "+": "plus", "=": "equals", "@": "at", "%": "percent", "×": "times",
    "±": "plus or minus", "≠": "is not equal to", "≤": "less than or equal to",
    "≥": "greater than or equal to", "÷": "divided by", "§": "section", "¶": "paragraph",
    "‰": "per mille", "°": "degrees", "©": "copyright",
}
_FRACTION_DENOMINATORS = frozenset({2, 3, 4, 5, 6, 8, 10, 12, 16, 32, 64, 100})
# "1500 people" counts; "1984 was" and "in 1984" are years; "1066" only after "in 1066".
_YEAR_WORDS = frozenset(
    "after around before between by circa during from in since till until year".split()
)
_COUNTING_WORDS = frozenset(
    "about almost approximately cost costs exactly just nearly number only over page "
    "pages paid room some than total under weighs with".split()
)
_PLURALS_WITHOUT_S = frozenset({"people", "men", "women", "children", "feet"})
_NOT_PLURALS = frozenset(
    "always as besides does has his is its less minus perhaps plus this thus towards unless "
    "us was whereas yes".split()
)


def signed(m: re.Match[str], words: str) -> str:
    sign = m.group("sign")
    return ("minus " if sign == "-" else "plus " if sign == "+" else "") + words


def _phone_groups(number: str) -> list[str]:
    """An unbroken run of digits in the groups a person reads it in: 3-3-4 for ten digits,
    1-3-3-4 for eleven starting with 1, 3-4 for seven, threes otherwise."""
    if len(number) == 11 and number.startswith("1"):
        return [number[0]] + _phone_groups(number[1:])
    groups = []
    while len(number) > 4:
        groups.append(number[:3])
        number = number[3:]
    return groups + [number]


def read_phone(text: str) -> str | None:
    """A telephone number digit by digit, its groups as written ("555-123-4567", "+44 20
    7946 0958") or, for one unbroken run, as a person groups it; None if it has no digits."""
    groups = re.findall(r"\d+", text)
    if not groups:
        return None
    if len(groups) == 1:
        groups = _phone_groups(groups[0])
    plus = "plus " if text.lstrip().startswith("+") else ""
    return plus + ", ".join(nb.digits(g) for g in groups)  # a comma is a short pause


def speak_phone(m: re.Match[str]) -> str:
    return read_phone(m.group(0))


def speak_dotted_number(m: re.Match[str]) -> str:
    parts = m.group("parts").split(".")
    if not m.group("v") and len(parts) == 4 and all(int(p) <= 255 for p in parts):
        return " dot ".join(nb.digits(p) for p in parts)  # an IP address
    return ("version " if m.group("v") else "") + " point ".join(nb.integer(p) for p in parts)


def speak_date(m: re.Match[str]) -> str | None:
    groups = m.groupdict()
    if groups.get("month"):
        month = MONTH_NUMBERS[groups["month"]]
        day = int(groups["day"]) if groups.get("day") else None
        if day is not None and not 1 <= day <= 31:
            return None
        words = nb.date(month, day, groups.get("year"), day_first=groups.get("first") is not None)
        if prev_word(m.string[: m.start()]) == "the":  # "on the 1st of May"
            words = words.removeprefix("the ")
        return words
    a, b, year = int(groups["a"]), int(groups["b"]), groups["year"]
    day_first = groups.get("dmy") is not None or a > 12
    month, day = (b, a) if day_first else (a, b)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return nb.date(month, day, year, day_first=day_first)


def read_clock(hour: int, minute: int, second: int | None = None, meridiem: str | None = None) -> str | None:
    """A time of day in words ("am"/"pm" or None for ``meridiem``), or None for one no clock
    shows (9:75, 25:00, 13 pm)."""
    if minute > 59 or (second or 0) > 59 or hour > 24 or (meridiem and not 1 <= hour <= 12):
        return None
    return nb.clock(hour, minute, second, meridiem)


def speak_clock(m: re.Match[str]) -> str | None:
    second = int(m.group("s")) if m.group("s") else None
    mer = m.group("mer")
    words = read_clock(int(m.group("h")), int(m.group("m") or 0), second, mer and mer[0].lower() + "m")
    if words is None:
        return None
    if mer and mer.endswith(".") and period_ends("final", m.string[m.end() :]):
        words += "."
    return words


def speak_money(m: re.Match[str]) -> str:
    groups = m.groupdict()
    if groups.get("code"):
        currency = nb.CURRENCY_CODES[groups["code"]]
    else:
        currency = nb.CURRENCY_SYMBOLS[groups["cur"]]
    return signed(m, nb.money(groups["num"], currency, groups.get("scale"), groups.get("num2")))


def speak_amount(m: re.Match[str], singular: str, plural: str) -> str:
    num, num2 = m.group("num"), m.group("num2")
    words = nb.number(num) + (f" to {nb.number(num2)}" if num2 else "")
    return signed(m, f"{words} {singular if num2 is None and nb.is_one(num) else plural}")


def speak_unit(m: re.Match[str]) -> str | None:
    unit = m.group("unit")
    rest = m.string[m.end() :]
    # "5 in the box" is a preposition; "5in", "5 in." and "5 in," are inches.
    preposition = m.group("space") and not m.group("dot")
    if unit == "in" and preposition and not re.match(r"\s?(?:[.,;:!?)]|$)", rest):
        return None
    return speak_amount(m, *nb.UNITS[unit])


def speak_decade(m: re.Match[str]) -> str | None:
    century, decade = m.group("century"), m.group("decade")
    if century:
        return nb.plural(nb.year(int(century + decade)))
    return None if decade == "00" else nb.plural(nb.cardinal(int(decade)))


def speak_fraction(m: re.Match[str]) -> str | None:
    if max(len(m.group("num")), len(m.group("den"))) > nb.MAX_CARDINAL_DIGITS:
        return None
    num, den = int(m.group("num")), int(m.group("den"))
    if den not in _FRACTION_DENOMINATORS or not 0 < num < den:
        return None
    whole = m.group("whole")
    return (f"{nb.integer(whole)} and " if whole else "") + nb.fraction(num, den)


def _is_year(text: str) -> bool:
    return text.isdigit() and len(text) == 4 and 1100 <= int(text) <= 2099


def speak_range(m: re.Match[str]) -> str:
    a, b = m.group("a"), m.group("b")
    if _is_year(a) and (_is_year(b) or (len(b) == 2 and b.isdigit())):
        low = nb.year(int(a))
        high = nb.year(int(b)) if len(b) == 4 else nb.short_year(b)  # "1990-95"
    else:
        low, high = nb.number(a), nb.number(b)
    return signed(m, f"{low} to {high}")


def speak_times(m: re.Match[str]) -> str:
    a, b = m.group("a"), m.group("b")
    if b is None:
        return nb.number(a) + " times"
    attached = m.group("x") == "x" and not m.group("gap")
    return f"{nb.number(a)} {'by' if attached else 'times'} {nb.number(b)}"


def speak_symbol(m: re.Match[str]) -> str | None:
    symbol = m.group(0)
    before, rest = m.string[: m.start()], m.string[m.end() :]
    if symbol in "<>":
        spaced = re.search(r"[\s\d]$", before) and re.match(r"[\s\d]", rest)
        return ("less than" if symbol == "<" else "greater than") if spaced else None
    if symbol == "~":
        return "about" if re.match(r" ?\d", rest) else None
    return SYMBOL_WORDS[symbol]


def speak_year(m: re.Match[str]) -> str | None:
    rest = m.string[m.end() :]
    nxt = next_word(rest)
    counted = nxt[:1].islower() and (
        (nxt.endswith("s") and nxt not in _NOT_PLURALS) or nxt in _PLURALS_WITHOUT_S
    )
    prev = prev_word(m.string[: m.start()])
    if counted or prev in _COUNTING_WORDS:
        return None
    if not _is_year(m.group("num")) and prev not in _YEAR_WORDS:
        return None
    return nb.year(int(m.group("num")))



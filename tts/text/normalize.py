"""Text normalization: any string -> the words a person would say reading it aloud.

The output is the contract with grapheme-to-phoneme (``NORMALIZED`` matches it exactly):
tokens separated by single spaces, each a lowercase word (``don't``), a single capital for a
spelled letter ("F B I"; the pronoun "I" too), or an inline phoneme override in braces
(``{HH AH0 L OW1}``), optionally followed by one of ``, . ? !``.

The work is an ordered pipeline of small rules (``RULES``). Each rule is a regex and a
function that says a match aloud. A finished reading is swapped out of the text for an
opaque key, so that later rules never see it: "$1.50" is read once, as money, and the
digits of "one dollar and fifty cents" can no longer catch the eye of the year rule. After
the last rule the leftover text is plain words and punctuation, which ``_assemble`` folds,
cases and joins with the readings put back.

Readings depend on context ("St." is "saint" before a name, "street" after one), and the
cleanup of one pass can create context for the next ("Pope-I" -> "pope I"), so the pipeline
runs until the text stops changing. That makes the result a fixed point:
``normalize(normalize(x)) == normalize(x)``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from unidecode import unidecode

from . import numbers as nb
from . import readings as rd


class NothingToSpeakError(ValueError):
    """The text holds nothing that can be said aloud (only punctuation, symbols, emoji...)."""


# --- the output contract ---------------------------------------------------------------------

_WORD = r"[a-z]+(?:'[a-z]+)*"
_OVERRIDE = r"\{[A-Z]+[0-9]?(?: [A-Z]+[0-9]?)*\}"
_TOKEN = rf"(?:{_WORD}|[A-Z]|{_OVERRIDE})[,.?!]?"
NORMALIZED = re.compile(rf"{_TOKEN}(?: {_TOKEN})*")
PUNCTUATION = ",.?!"
_STRENGTH = {",": 0, ".": 1, "!": 2, "?": 3}  # two marks in a row keep the stronger

# --- readings held out of the text -----------------------------------------------------------

# A reading is replaced by OPEN + its index in hex, written with private-use characters
# (input private-use characters are removed first), + CLOSE. No rule pattern can match it.
_OPEN, _CLOSE, _HEX0 = "\ue000", "\ue001", 0xE010
_HELD = re.compile(f"{_OPEN}([{chr(_HEX0)}-{chr(_HEX0 + 15)}]+){_CLOSE}")


class _Held:
    """Finished readings of one pass, by key."""

    def __init__(self) -> None:
        self.readings: list[str] = []

    def hold(self, reading: str) -> str:
        key = "".join(chr(_HEX0 + int(d, 16)) for d in format(len(self.readings), "x"))
        self.readings.append(reading)
        return f"{_OPEN}{key}{_CLOSE}"

    def reading(self, key: str) -> str:
        return self.readings[int("".join(format(ord(c) - _HEX0, "x") for c in key), 16)]


@dataclass(frozen=True)
class Rule:
    """A named step: ``speak`` turns a match into normalized words, or None to leave it."""

    name: str
    pattern: re.Pattern[str]
    speak: Callable[[re.Match[str]], str | None]

    def apply(self, text: str, held: _Held) -> str:
        def replace(m: re.Match[str]) -> str:
            spoken = self.speak(m)
            return m.group(0) if spoken is None else held.hold(spoken)

        return self.pattern.sub(replace, text)


# --- unicode cleanup -------------------------------------------------------------------------

_BEFORE_NFKC = str.maketrans({"™": None, "®": None, "℠": None, "№": "No. "})
# Squares and cubes: "km²" is a unit ("km2", square kilometers), "x²" is "x squared".
_POWERS = re.compile(r"(?:(?<![A-Za-z])(?P<unit>km|cm|mm|ft|m))?(?P<power>[²³])")
# NFKC writes "2½" as "21⁄2"; a space keeps the whole number apart from the fraction.
_VULGAR_FRACTION = re.compile(r"(?<=\d)(?=[\u00bc-\u00be\u2150-\u215e])")
_FOLD = {
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'", "ʼ": "'",
    "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"', "‹": '"', "›": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "−": "-", "—": " -- ", "―": " -- ",
    "…": "...", "⁄": "/", "∕": "/", "•": ",", "·": ",",
}
# Non-ASCII symbols that rules below read aloud; any other symbol or emoji is dropped.
_KEPT = frozenset("€£¥₹¢°×±≠≤≥÷§¶‰©")
_TRANSLITERATED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")
_GREEK = "\u0370-\u03ff\u1f00-\u1fff"
_LONE_GREEK = re.compile(f"(?<![{_GREEK}])[{_GREEK}](?![{_GREEK}])")


@functools.lru_cache(maxsize=4096)
def _clean_char(ch: str) -> str:
    if " " <= ch <= "~":
        return ch
    if ch in _FOLD:
        return _FOLD[ch]
    if ch in _KEPT:
        return ch
    category = unicodedata.category(ch)
    if category[0] == "Z" or ch in "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85":
        return " "
    if category == "Nd":  # digits of any script
        return str(unicodedata.decimal(ch))
    if category[0] == "L":
        # unidecode reads Latin, Greek and Cyrillic well; its guesses for other scripts
        # would come out as English-looking nonsense, so those are left unsaid.
        if unicodedata.name(ch, "").startswith(_TRANSLITERATED_SCRIPTS):
            return re.sub("[^A-Za-z]", "", unidecode(ch))
        return " "
    if category[0] in "MC":  # combining marks, controls, format and private-use characters
        return ""
    return " "


def unspeakable(text: str) -> list[str]:
    """The characters of ``text`` that the frontend drops unsaid: emoji and other symbols it
    has no reading for, letters of scripts it does not transliterate, control characters and
    undecodable bytes. Whitespace is not among them."""
    return [ch for ch in text if not ch.isspace() and not _clean_char(ch).strip()]


def _greek_letter_name(m: re.Match[str]) -> str:
    """A Greek letter on its own is said by name: "β-blocker" -> "beta blocker"."""
    words = unicodedata.name(m.group(0), "").split()
    if "LETTER" not in words:
        return m.group(0)
    names = [w for w in words[words.index("LETTER") + 1 :] if w not in ("FINAL", "SMALL")]
    return f" {names[0].lower()} " if names and names[0].isalpha() else m.group(0)


def _say_power(m: re.Match[str]) -> str:
    digit = "2" if m.group("power") == "²" else "3"
    unit = m.group("unit") or ""
    if unit + digit in nb.UNITS:
        return unit + digit
    return unit + (" squared" if digit == "2" else " cubed")


def _clean(text: str) -> str:
    text = _VULGAR_FRACTION.sub(" ", text.translate(_BEFORE_NFKC))
    text = _POWERS.sub(_say_power, text)
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(\d ?)μ(?=[A-Za-z])", r"\1u", text)  # micro: "5 μm" -> "5 um"
    text = re.sub(r"(\d ?)Ω", r"\1ohm", text)
    text = _LONE_GREEK.sub(_greek_letter_name, text)
    text = "".join(_clean_char(ch) for ch in text)
    return " ".join(text.split())


# --- the rules -------------------------------------------------------------------------------


def _alternation(words) -> str:
    """Longest first, so that "km/h" wins over "km" and "Mrs." over "Mr"."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_NUM = r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
_SIGN = rf"(?P<sign>(?<![\w.+\-{_CLOSE}])[-+])?"  # "-5", but not "COVID-19" or "5%-10%"
_START = r"(?<![\d.])(?<!\d,)"  # a number not glued onto another one
_TO = r"\s?(?:-|to)\s?"
_SCALE = rf"(?:\s?(?P<scale>{_alternation(nb.SCALES)})(?![A-Za-z\d]))?"
_MERIDIEM = r"(?P<mer>[AaPp](?:\.\s?[Mm]\.?|[Mm])(?![A-Za-z]))"
_MONTH = rf"(?P<month>{_alternation(rd.MONTH_NUMBERS)})\b\.?"
_TLDS = "com|org|net|edu|gov|io|ai|dev|app|co|uk|us|de|fr|info|biz|me|tv|ly|ca|au|jp|nl|eu"
_FILE_TYPES = "html?|py|txt|pdf|jpe?g|png|gif|csv|json|exe|zip|js|md|docx?|xlsx?|mp[34]|wav"
_URL_END = rf"[^\s<>\"{_OPEN}{_CLOSE}]*[^\s<>\".,;:!?)\]'{_OPEN}{_CLOSE}]"


def _rule(name: str, pattern: str, speak: Callable[[re.Match[str]], str | None]) -> Rule:
    return Rule(name, re.compile(pattern), speak)


_ABBREVIATIONS = _alternation(set(rd.ABBREVIATIONS) | {a.capitalize() for a in rd.ANY_CASE})
_CODES = _alternation(nb.CURRENCY_CODES)
_MONEY_SYMBOL = "[$£€¥₹]"
_ROMAN_LEADS = (
    rf"(?:{_alternation(rd.SOVEREIGNS)}) [A-Z][a-z]+|{_alternation(rd.REGNAL_NAMES + rd.NUMBERED)}"
)

RULES: tuple[Rule, ...] = (
    # Whole spans first, before their dots, digits and dashes can be read piecemeal.
    _rule("override", r"\{\s*([A-Za-z]+[0-9]?(?:\s+[A-Za-z]+[0-9]?)*)\s*\}",
          lambda m: "{" + " ".join(m.group(1).upper().split()) + "}"),
    _rule("email", r"(?<![\w.+-])[A-Za-z0-9](?:[\w.+-]*[A-Za-z0-9])?@[A-Za-z0-9-]+"
          r"(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-]|\.\w)",
          lambda m: rd.read_address(m.group(0))),
    _rule("url", rf"(?:\b(?:https?|ftp)://|\bwww\.){_URL_END}"
          rf"|(?<![\w@.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})(?:/{_URL_END}|/)?"
          r"(?![\w-]|\.\w)", rd.speak_url),
    _rule("file name", rf"(?<![\w.-])[\w-]+(?:\.[\w-]+)*\.(?:{_FILE_TYPES})(?![\w]|\.\w)",
          lambda m: rd.read_address(m.group(0))),
    _rule("phone number",
          r"(?<![\w+])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\d-])"
          r"|(?<![\w+])\+\d{1,3}(?:[\s.-]\d{1,4}){2,5}(?![\d-])"
          r"|(?<![\w.-])\d{3}-\d{4}(?![\d-])", rd.speak_phone),
    _rule("digit groups", r"(?<![\w.-])\d+(?:-\d+){3,}(?![\w-])", rd.speak_phone),  # ISBN
    # Dates and times, before a colon or slash can read as a ratio or a fraction.
    _rule("iso date", r"(?<![\d-])(?P<year>\d{4})-(?P<a>\d{2})-(?P<b>\d{2})(?![\d-])",
          rd.speak_date),
    _rule("numeric date",
          r"(?<![\d/.-])(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<year>\d{4}|\d{2})(?![\d/])",
          rd.speak_date),
    _rule("dotted date",  # European: day first
          r"(?<![\d.])(?P<a>\d{1,2})\.(?P<b>\d{1,2})\.(?P<year>\d{4})(?P<dmy>)(?![\d]|\.\d)",
          rd.speak_date),
    _rule("ip address or version",
          r"(?<![\w.])(?P<v>v)?(?P<parts>\d+(?:\.\d+){2,}|(?<=v)\d+(?:\.\d+)+)(?![\w]|\.\d)",
          rd.speak_dotted_number),
    _rule("month day", rf"\b{_MONTH}\s(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?![\d:]|\.\d|\w)"
          rf"(?:,?\s(?P<year>\d{{4}})(?!\d|,\d))?", rd.speak_date),
    _rule("day month",
          rf"(?<![\d.])(?P<day>\d{{1,2}})(?P<first>)(?:st|nd|rd|th)?\s(?:of\s)?{_MONTH}"
          rf"(?:,?\s(?P<year>\d{{4}})(?!\d|,\d))?", rd.speak_date),
    _rule("month year", rf"\b{_MONTH},?\s(?P<year>\d{{4}})(?!\d|,\d)", rd.speak_date),
    _rule("clock time",
          rf"(?<![\d:.])(?P<h>\d{{1,2}}):(?P<m>\d{{2}})(?::(?P<s>\d{{2}}))?(?![\d:]|\.\d)"
          rf"(?:\s?{_MERIDIEM})?", rd.speak_clock),
    _rule("hour", rf"(?<![\d:.])(?P<h>\d{{1,2}})(?P<m>)(?P<s>)\s?{_MERIDIEM}", rd.speak_clock),
    _rule("ratio", r"(?<![\d:.])(\d+):(\d+)(?![\d:]|\.\d)",
          lambda m: f"{nb.integer(m.group(1))} to {nb.integer(m.group(2))}"),
    # Numbers with a unit, before a dash between two of them can read as a plain range.
    _rule("number sign",
          r"(?<![\w.])(?P<abbr>[Nn]os?|[Pp]p?|[Vv]ol|[Ff]ig|[Cc]h|[Aa]rt|[Ss]ec|[Ee]x)\.\s?(?=\d)",
          rd.speak_before_number),
    _rule("hash number", r"#(?=\s?\d)", lambda m: "number"),
    _rule("money", rf"{_SIGN}(?:US)?(?P<cur>{_MONEY_SYMBOL})\s?(?P<num>{_NUM})"
          rf"(?:{_TO}{_MONEY_SYMBOL}?(?P<num2>{_NUM}))?{_SCALE}", rd.speak_money),
    _rule("money after", rf"{_SIGN}{_START}(?P<num>{_NUM})\s?(?P<cur>[$£€¥₹¢])",
          rd.speak_money),
    _rule("currency code", rf"\b(?P<code>{_CODES})\s?{_SIGN}(?P<num>{_NUM}){_SCALE}",
          rd.speak_money),
    _rule("currency code after",
          rf"{_SIGN}{_START}(?P<num>{_NUM}){_SCALE}\s(?P<code>{_CODES})\b", rd.speak_money),
    _rule("percent", rf"{_SIGN}{_START}(?P<num>{_NUM})(?:%?{_TO}(?P<num2>{_NUM}))?\s?%",
          lambda m: rd.speak_amount(m, "percent", "percent")),
    _rule("decade",
          r"(?<![\d.])(?:(?P<century>1[1-9]|20)|')?(?P<decade>\d0)'?s(?![A-Za-z\d])",
          rd.speak_decade),
    _rule("ordinal",
          rf"{_START}(?P<num>\d{{1,3}}(?:,\d{{3}})+|\d+)(?:st|nd|rd|th|ST|ND|RD|TH)(?![A-Za-z\d])",
          lambda m: nb.ordinal_text(m.group("num"))),
    _rule("unit", rf"{_SIGN}{_START}(?P<num>{_NUM})(?:{_TO}(?P<num2>{_NUM}))?(?P<space>\s?)"
          rf"(?P<unit>{_alternation(nb.UNITS)})(?P<dot>\.(?=\s[a-z]))?(?![A-Za-z\d/])",
          rd.speak_unit),
    _rule("fraction", r"(?<![\d/.])(?:(?P<whole>\d+)\s)?(?P<num>\d+)/(?P<den>\d+)(?![\d/])",
          rd.speak_fraction),
    _rule("range", rf"{_SIGN}{_START}(?P<a>{_NUM})\s?-\s?(?P<b>{_NUM})(?![\d-]|\.\d)",
          rd.speak_range),
    _rule("times",
          rf"{_START}(?P<a>{_NUM})(?P<gap>\s?)(?P<x>[x×])(?:\s?(?P<b>{_NUM})|(?![A-Za-z\d-]))",
          rd.speak_times),
    # Words: numerals after names, abbreviations, then letters and acronyms.
    _rule("roman numeral", rf"\b(?P<lead>{_ROMAN_LEADS})\s(?P<roman>[IVXLCDM]+)"
          r"(?P<poss>'s)?(?![A-Za-z\d']|\.[A-Za-z])", rd.speak_roman),
    _rule("abbreviation", rf"(?<![\w.])(?:{_ABBREVIATIONS})(?![\w])", rd.speak_abbreviation),
    _rule("dotted acronym", r"(?<![\w.])(?:(?:[A-Za-z]\.){2,}|(?:[A-Z]\.)+[A-Z](?![\w.]))",
          rd.speak_dotted_acronym),
    _rule("initial", r"(?<![\w.])(?P<letter>[A-HJ-Z])\.(?=\s[A-Z])", rd.speak_initial),
    _rule("letters and letters",  # AT&T, R&D
          r"(?<![A-Za-z])(?P<a>[A-Z]{1,3})&(?P<b>[A-Z]{1,3})(?![A-Za-z])",
          lambda m: f"{rd.spell(m.group('a'))} and {rd.spell(m.group('b'))}"),
    _rule("prefixed acronym", r"(?<![A-Za-z'])[a-z][A-Z]{2,}(?![A-Za-z'])",  # mRNA, iOS
          lambda m: rd.spell(m.group(0))),
    _rule("capitals",
          r"(?<![A-Za-z'])(?P<caps>[A-Z]{2,}(?:'[A-Z]+)*)(?P<suffix>'s|s)?(?![A-Za-z'])",
          rd.speak_caps),
    _rule("mixed-case letters",  # PhD, MSc: capitals and no vowel
          r"(?<![A-Za-z'])(?=[a-z]*[A-Z][a-z]*[A-Z])(?![A-Z]+\b)"
          r"[B-DF-HJ-NP-TV-XZb-df-hj-np-tv-xz]{2,5}(?![A-Za-z'])", lambda m: rd.spell(m.group(0))),
    # Symbols and whatever numbers are left.
    _rule("with", r"(?<![\w/])[Ww]/(?:[Oo](?![\w/])|(?=\s))",
          lambda m: "without" if len(m.group(0)) == 3 else "with"),
    _rule("sharp", r"(?<![A-Za-z])(?P<note>[A-G])#(?![\w#])", lambda m: m.group("note") + " sharp"),
    _rule("symbol", rf"[{re.escape(''.join(rd.SYMBOL_WORDS))}<>~]", rd.speak_symbol),
    _rule("year", r"(?<![\w.,-])(?P<num>1\d{3}|20\d\d)(?![\w]|[.,]\d)", rd.speak_year),
    _rule("number", rf"{_SIGN}{_START}(?P<num>{_NUM})",
          lambda m: rd.signed(m, nb.number(m.group("num")))),
    _rule("digits", r"\d+", lambda m: nb.integer(m.group(0))),
)


# --- assembly --------------------------------------------------------------------------------

_RAW_TOKENS = re.compile(rf"{_HELD.pattern}|[A-Za-z]+(?:'[A-Za-z]+)*|[{PUNCTUATION}]")
_READING_TOKENS = re.compile(rf"\{{[^{{}}]*\}}|[A-Za-z]+(?:'[A-Za-z]+)*|[{PUNCTUATION}]")
# Capital "A" is the article only before a word; never before the words that spell out
# addresses ("A at example dot com") or join list items ("vitamins C, A and D").
_NOT_AFTER_ARTICLE = frozenset(
    {"and", "at", "dash", "dot", "equals", "minus", "or", "plus", "slash", "underscore"}
)


def _fold_punctuation(text: str) -> str:
    """Pauses onto "," and ".": ellipses, dashes, colons, brackets; the rest becomes space."""
    text = re.sub(r"\.{2,}(?=[\s\"')\]]*$)", " . ", text)  # a trailing ellipsis ends the text
    text = re.sub(r"\.{2,}", " , ", text)
    return re.sub(r"--+|(?<!\S)-(?!\S)|[;:()\[\]|]", " , ", text)


def _is_article(tokens: list[str], i: int, shouting: bool) -> bool:
    prev = tokens[i - 1] if i else ""
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    at_start = shouting or not prev or prev[-1] in PUNCTUATION
    return at_start and len(nxt) > 1 and nxt[0].isalpha() and nxt.lower() not in _NOT_AFTER_ARTICLE


def _assemble(text: str, held: _Held, shouting: bool) -> list[str]:
    """Leftover text + held readings -> normalized tokens, punctuation attached."""
    tokens: list[str] = []
    raw: list[bool] = []  # whether each token still needs casing
    for m in _RAW_TOKENS.finditer(_fold_punctuation(text)):
        if m.group(1) is not None:
            reading = _READING_TOKENS.findall(held.reading(m.group(1)))
            tokens += reading
            raw += [False] * len(reading)
        else:
            tokens.append(m.group(0))
            raw.append(True)
    for i, token in enumerate(tokens):
        if not raw[i] or token in PUNCTUATION:
            continue
        if token in ("I", "i"):
            tokens[i] = "I"
        elif token == "A":
            tokens[i] = "a" if _is_article(tokens, i, shouting) else "A"
        elif not (len(token) == 1 and token.isupper()):
            tokens[i] = token.lower()
    out: list[str] = []
    for token in tokens:
        if token not in PUNCTUATION:
            out.append(token)
        elif out and out[-1][-1] not in PUNCTUATION:
            out[-1] += token
        elif out and _STRENGTH[token] > _STRENGTH[out[-1][-1]]:
            out[-1] = out[-1][:-1] + token
    return out


def _normalize_once(text: str) -> str:
    held = _Held()
    text = _clean(text)
    shouting = rd.shouting(text)
    for rule in RULES:
        text = rule.apply(text, held)
    return " ".join(_assemble(text, held, shouting))


# Passes after the first rarely change anything; the bound only guards against a loop.
_MAX_PASSES = 6


def normalize(text: str) -> str:
    """Any text -> normalized words (see the module docstring for the format).

    "Dr. Smith paid $3.50 on 3/4/2025." -> "doctor smith paid three dollars and fifty cents
    on march fourth, twenty twenty five." Raises ``NothingToSpeakError`` when nothing
    speakable is left (only punctuation, symbols, emoji or whitespace).
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() takes a str, not {type(text).__name__}")
    out = _normalize_once(text)
    if not out:
        preview = text if len(text) <= 40 else text[:37] + "..."
        raise NothingToSpeakError(f"nothing to speak in the text {preview!r}")
    for _ in range(_MAX_PASSES):
        again = _normalize_once(out)
        if again == out:
            break
        out = again
    return out

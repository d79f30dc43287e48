"""SSML -> a flat plan of speech and pauses that the engine reads like plain text.

``parse_ssml`` reads a ``<speak>`` document into paragraphs of ``Segment``s. A speech
segment holds text for ``normalize`` (say-as, sub and phoneme already rewritten into words
or ``{...}`` overrides), its speaking rate, whether an ``<s>`` boundary comes before it, and
the character offsets it was read from in the original string, so that word timings can
point back into the user's input. A pause segment holds seconds of silence. Text outside
``<s>`` is still cut into sentences by the engine; only explicit boundaries are marked.

Consecutive speech segments of one rate with no boundary between them are one stretch of
speech: they are separate only so that each keeps its own source. Pause marks that open
plain text right after an element ("<say-as ...>9am</say-as>.") end the segment before it,
where the normalizer keeps them.

Supported: speak, p, s, break, prosody (rate only), say-as, sub, phoneme (ARPAbet).
Any other element is read as its text, and the document warns once, naming them.

The parser is defusedxml's expat reader, with DTDs, entity declarations and external
references forbidden. Input is bounded before parsing (``MAX_SSML_CHARS``) and nesting
while parsing (``MAX_DEPTH``), and the plan is built from events, never by recursion, so
hostile documents end in one ``SsmlError`` line within milliseconds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from xml.sax import SAXParseException
from xml.sax.handler import ContentHandler, property_lexical_handler

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.expatreader import DefusedExpatParser
from unidecode import unidecode

from tts.errors import MAX_RATE, MIN_RATE

from . import numbers as nb
from .g2p import LETTER_NAMES
from .readings import MONTH_NUMBERS, read_clock, read_phone
from .symbols import PHONEMES, VOWELS

log = logging.getLogger(__name__)

# Bounds on what is parsed at all: a real document is a few kilobytes, and SSML nests a
# handful of levels (speak > p > s > prosody > say-as).
MAX_SSML_CHARS = 1_000_000
MAX_DEPTH = 64
# The longest single <break>, in seconds; longer ones are cut to it with a warning, so that
# one attribute cannot ask for hours of silence.
MAX_BREAK = 10.0

# <break strength="...">, in seconds. "medium" is also the length of a bare <break/>.
BREAK_STRENGTHS = {
    "none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.75, "x-strong": 1.25,
}
# <prosody rate="..."> by name, as factors of the voice's own rate (not of an enclosing
# prosody: a name says how fast, a percentage how much faster).
NAMED_RATES = {
    "x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5,
}

_PHONEME_SET = frozenset(PHONEMES) | frozenset(VOWELS)  # a vowel may omit its stress
_ARPABET = ("arpabet", "x-arpabet", "cmu")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)", re.IGNORECASE)
_PERCENT = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*%")
_FACTOR = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_IGNORED_PROSODY = ("pitch", "contour", "range", "volume", "duration")
# Markup: an XML declaration or other processing instruction, a doctype, a comment or an element.
_MARKUP_START = re.compile(r"\A\ufeff?\s*<(?:[?!:]|[^\W\d])")
# Marks that end the words before them, where a run of plain text can start after an element.
_LEADING_MARKS = re.compile(r"[\s,.?!;:…)\]]*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # as expat counts lines


class SsmlError(ValueError):
    """A document that cannot be read as SSML; the message is one line, with the position
    (line and column counted from 1) where there is one."""


@dataclass(frozen=True)
class Segment:
    """One step of the plan: speech (``text`` at ``rate``) or, when ``pause`` is set, silence.

    text: words for ``normalize``. rate: speaking rate, a factor of the voice's own, within
    [MIN_RATE, MAX_RATE]. sentence_break_before: an ``<s>`` starts or ends just before this
    text. source: (start, end) character offsets in the original SSML string of what was
    read, the markup between its words included. pause: seconds of silence, or None for
    speech; a pause's source is its ``<break>`` tag.
    """

    text: str = ""
    rate: float = 1.0
    sentence_break_before: bool = False
    source: tuple[int, int] = (0, 0)
    pause: float | None = None

    @property
    def is_pause(self) -> bool:
        return self.pause is not None


Paragraph = list[Segment]


@dataclass
class SsmlDocument:
    """A parsed SSML document: paragraphs of segments in reading order, and what was not
    read as written (unsupported elements, clamped rates...), one line each."""

    paragraphs: list[Paragraph]
    warnings: list[str] = field(default_factory=list)


def is_ssml(text: str) -> bool:
    """Whether ``text`` is to be read as SSML: after whitespace, it starts with markup (an
    XML declaration, a doctype, a comment, an element). Markup is never said: a document
    that is not a ``<speak>`` one, or that declares a DTD, is refused by ``parse_ssml``
    rather than its tags read aloud."""
    return _MARKUP_START.match(text) is not None


def parse_ssml(text: str) -> SsmlDocument:
    """Read an SSML document into a plan of speech and pause segments (see the module
    docstring). Raises ``SsmlError``, one line naming line and column where there is one,
    for text that is not markup at all, malformed XML, a root other than ``<speak>``, an
    unreadable attribute value, a DTD or entity declaration, more than ``MAX_DEPTH`` levels
    of nesting, or more than ``MAX_SSML_CHARS`` characters."""
    if not isinstance(text, str):
        raise TypeError(f"parse_ssml() takes a str, not {type(text).__name__}")
    if len(text) > MAX_SSML_CHARS:
        raise SsmlError(f"SSML of {len(text):,} characters is too long; the limit is {MAX_SSML_CHARS:,}")
    if not is_ssml(text):
        raise SsmlError("the text is not SSML: it has no <speak> root element")
    reader = DefusedExpatParser(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    builder = _PlanBuilder(text, reader)
    reader.setContentHandler(builder)
    reader.setProperty(property_lexical_handler, builder)
    try:
        reader.feed(text)
        reader.close()
    except SAXParseException as e:
        raise SsmlError(f"SSML line {e.getLineNumber()}, column {e.getColumnNumber() + 1}: "
                        f"{e.getMessage()}") from None
    except DTDForbidden:
        raise builder.error("a document type declaration (<!DOCTYPE>) is not allowed") from None
    except EntitiesForbidden:
        raise builder.error("entity declarations are not allowed") from None
    except ExternalReferenceForbidden:
        raise builder.error("external references are not allowed") from None
    document = builder.document()
    for warning in document.warnings:
        log.warning("%s", warning)
    return document


# --- say-as ----------------------------------------------------------------------------------


def _say_characters(text: str, fmt: str | None) -> str | None:
    # A capital letter alone is said by its name; "A" is the one the normalizer may take
    # for the article before a word, so it is written as its phonemes.
    out = []
    for ch in text:
        if ch.isdigit():
            out.append(nb.digits(ch))
        elif ch.isalpha():
            out += ["{" + " ".join(LETTER_NAMES["A"]) + "}" if c == "A" else c
                    for c in re.sub("[^A-Z]", "", unidecode(ch).upper())]
        elif not ch.isspace():
            out.append(ch)  # a symbol the normalizer reads ("@" -> "at") or drops
    return " ".join(out) or None


def _say_cardinal(text: str, fmt: str | None) -> str | None:
    # As words: digits alone could still be read as a year ("1984") or a phone number.
    m = re.fullmatch(r"([-+]?)(\d*)(?:\.(\d+))?", re.sub(r"[\s,_]", "", text))
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, fraction = m.groups()
    if len(whole) <= nb.MAX_CARDINAL_DIGITS:
        return nb.number(m.group(0))
    # Too long to say as a number (and to convert with int()): digit by digit, as
    # numbers.cardinal does.
    words = {"-": "minus ", "+": "plus "}.get(sign, "") + nb.digits(whole)
    return words + (f" point {nb.digits(fraction)}" if fraction else "")


def _say_ordinal(text: str, fmt: str | None) -> str | None:
    m = re.fullmatch(r"(\d+)(?:st|nd|rd|th)?", re.sub(r"[\s,_]", "", text), re.IGNORECASE)
    if not m:
        return None
    digits = m.group(1)
    return nb.ordinal(int(digits)) if len(digits) <= nb.MAX_CARDINAL_DIGITS else nb.digits(digits)


def _say_digits(text: str, fmt: str | None) -> str | None:
    return nb.digits(text) or None


_DATE_FORMATS = ("mdy", "dmy", "ymd", "ydm", "md", "dm", "ym", "my", "y", "m", "d")


def _month(text: str) -> int | None:
    if text.isdigit():
        return int(text) if 1 <= int(text) <= 12 else None
    return MONTH_NUMBERS.get(text.rstrip(".").capitalize())


def _say_date(text: str, fmt: str | None) -> str | None:
    fmt = fmt or "ymd"  # ISO 8601
    parts = [p for p in re.split(r"[-/.,\s]+", text) if p]
    if len(parts) != len(fmt):
        return None
    fields = dict(zip(fmt, parts))
    month = _month(fields["m"]) if "m" in fields else None
    day = year = None
    if "d" in fields:
        m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", fields["d"], re.IGNORECASE)
        day = int(m.group(1)) if m and 1 <= int(m.group(1)) <= 31 else None
        if day is None:
            return None
    if "y" in fields:
        year = fields["y"] if re.fullmatch(r"\d{4}|\d{2}", fields["y"]) else None
        if year is None:
            return None
    if "m" in fields and month is None:
        return None
    if month is None:  # "y", "d"
        return nb.year(int(year)) if day is None else f"the {nb.ordinal(day)}"
    return nb.date(month, day, year, day_first=fmt.index("d") < fmt.index("m") if day else False)


_TIME = re.compile(r"(\d{1,2})(?:[:.h](\d{2}))?(?::(\d{2}))?\s*(?:([ap])\.?\s?m\.?)?", re.IGNORECASE)


def _say_time(text: str, fmt: str | None) -> str | None:
    m = _TIME.fullmatch(text)
    if not m:
        return None
    second = int(m.group(3)) if m.group(3) else None
    meridiem = m.group(4) and m.group(4).lower() + "m"
    return read_clock(int(m.group(1)), int(m.group(2) or 0), second, meridiem)


def _say_telephone(text: str, fmt: str | None) -> str | None:
    return read_phone(text)


# interpret-as -> content (whitespace collapsed), format -> words, or None if unreadable.
SAY_AS = {
    "characters": _say_characters,
    "spell-out": _say_characters,
    "verbatim": _say_characters,
    "cardinal": _say_cardinal,
    "number": _say_cardinal,
    "ordinal": _say_ordinal,
    "digits": _say_digits,
    "date": _say_date,
    "time": _say_time,
    "telephone": _say_telephone,
}


# --- building the plan -----------------------------------------------------------------------


class _Chunk:
    """Character data from one parser event: its text and its (start, end) offsets in the
    original, ``end`` set at the next event."""

    __slots__ = ("text", "start", "end")

    def __init__(self, text: str, start: int):
        self.text, self.start, self.end = text, start, start


def _source(original: str, chunks: list[_Chunk]) -> tuple[int, int] | None:
    """The offsets from the first to the last character of the chunks that is not
    whitespace, or None if they are all whitespace."""
    said = [c for c in chunks if c.text.strip()]
    if not said:
        return None
    first, last = said[0], said[-1]
    raw_first, raw_last = original[first.start : first.end], original[last.start : last.end]
    return (first.start + len(raw_first) - len(raw_first.lstrip()),
            last.end - len(raw_last) + len(raw_last.rstrip()))


def _after_marks(original: str, chunks: list[_Chunk]) -> int | None:
    """The offset in the original of the first character of the chunks that is neither
    whitespace nor a pause mark, or None if there is none."""
    for c in chunks:
        i = _LEADING_MARKS.match(c.text).end()
        if i < len(c.text):
            # A chunk is the text as written, but for a reference ("&#65;"), read as one.
            return c.start + i if original[c.start : c.end] == c.text else c.start
    return None


def _kind(attrs: dict[str, str]) -> str:
    return attrs["interpret-as"].strip().lower()


def _preview(text: str, chars: int = 40) -> str:
    """The start of a text, for a warning that must stay one short line."""
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _listing(names: list[str], shown: int = 10) -> str:
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


@dataclass
class _Frame:
    """An open element: its name, where it starts, the rate inside it (unclamped), and for
    say-as, sub and phoneme, the text collected to be rewritten when it closes. ``skip``:
    inside a <break>, whose content is not read."""

    name: str
    start: int
    where: str
    rate: float
    attrs: dict[str, str]
    collected: list[_Chunk] | None = None
    skip: bool = False
    pause: float = 0.0


class _PlanBuilder(ContentHandler):
    """SAX content and lexical handler that turns parser events into the plan."""

    def __init__(self, original: str, reader: DefusedExpatParser):
        super().__init__()
        self._original = original
        self._reader = reader  # the locator: positions of the current event
        self._line_starts = [0] + [m.end() for m in _LINE_BREAK.finditer(original)]
        self._frames: list[_Frame] = []
        self._paragraphs: list[Paragraph] = []
        self._paragraph: Paragraph = []
        self._run: list[_Chunk] = []  # plain text not yet made a segment, at the current rate
        self._pending: _Chunk | None = None  # the chunk whose end the next event marks
        self._sentence_break = False
        self._unsupported: dict[str, None] = {}  # an ordered set
        self._ignored: dict[str, None] = {}
        self._warnings: list[str] = []

    # positions

    def _where(self) -> str:
        return f"line {self._reader.getLineNumber()}, column {self._reader.getColumnNumber() + 1}"

    def error(self, message: str) -> SsmlError:
        return SsmlError(f"SSML {self._where()}: {message}")

    def _event(self) -> int:
        """Offset of the current event in the original; ends the chunk before it."""
        line, column = self._reader.getLineNumber(), self._reader.getColumnNumber()
        offset = self._line_starts[line - 1] + column
        if self._pending is not None:
            self._pending.end = offset
            self._pending = None
        return offset

    # the result

    def document(self) -> SsmlDocument:
        warnings = []
        if self._unsupported:
            warnings.append("SSML elements not supported, read as plain text: "
                            + _listing(list(self._unsupported)))
        if self._ignored:
            warnings.append("SSML prosody attributes not supported, ignored: " + _listing(list(self._ignored)))
        return SsmlDocument(self._paragraphs, warnings + self._warnings)

    def _rate(self) -> float:
        return min(max(self._frames[-1].rate, MIN_RATE), MAX_RATE)

    def _speak(self, text: str, source: tuple[int, int]) -> None:
        text = " ".join(text.split())
        if text:
            self._paragraph.append(Segment(text, self._rate(), self._sentence_break, source))
            self._sentence_break = False

    def _flush(self) -> None:
        """Make the plain text read so far a segment. Punctuation it starts with ends the
        segment before ("<say-as ...>9am</say-as>. Then"): alone, the normalizer would drop
        it, and the pause it marks would be lost."""
        chunks, self._run = self._run, []
        source = _source(self._original, chunks)
        if source is None:
            return
        text = " ".join("".join(c.text for c in chunks).split())
        marks = _LEADING_MARKS.match(text).end()
        previous = self._paragraph[-1] if self._paragraph else None
        if marks and previous is not None and not previous.is_pause and not self._sentence_break:
            start = _after_marks(self._original, chunks)
            end = source[1] if start is None else start
            while self._original[end - 1].isspace():
                end -= 1
            self._paragraph[-1] = replace(previous, text=f"{previous.text} {text[:marks].strip()}",
                                          source=(previous.source[0], end))
            text, source = text[marks:], (start, source[1])
        self._speak(text, source)

    def _end_paragraph(self) -> None:
        self._flush()
        if self._paragraph:
            self._paragraphs.append(self._paragraph)
        self._paragraph = []
        self._sentence_break = False

    # SAX events

    def characters(self, content: str) -> None:
        chunk = _Chunk(content, self._event())
        self._pending = chunk
        frame = self._frames[-1]
        if not frame.skip:
            (frame.collected if frame.collected is not None else self._run).append(chunk)

    def startElement(self, name: str, attrs) -> None:
        start = self._event()
        attrs = dict(attrs)
        if len(self._frames) >= MAX_DEPTH:
            raise self.error(f"elements nested more than {MAX_DEPTH} deep")
        if not self._frames:
            if name != "speak":
                raise self.error(f"the root element must be <speak>, not <{name}>")
            self._frames.append(_Frame(name, start, self._where(), 1.0, attrs))
            return
        outer = self._frames[-1]
        frame = _Frame(name, start, self._where(), outer.rate, attrs)
        self._frames.append(frame)
        if outer.skip or outer.collected is not None:
            # Markup inside say-as, sub and phoneme is read for its text only.
            frame.collected, frame.skip = outer.collected, outer.skip
            if not outer.skip:
                self._unsupported[name] = None
            return
        if name == "speak":
            raise self.error("<speak> inside <speak>")
        if name == "p":
            self._end_paragraph()
        elif name == "s":
            self._flush()
            self._sentence_break = True
        elif name == "break":
            self._flush()
            frame.skip, frame.pause = True, self._break(attrs)
        elif name == "prosody":
            self._flush()
            frame.rate = self._prosody_rate(attrs, outer.rate)
        elif name in ("say-as", "sub", "phoneme"):
            self._check(name, attrs)
            self._flush()
            frame.collected = []
        else:
            self._unsupported[name] = None

    def endElement(self, name: str) -> None:
        end = self._event()
        frame = self._frames[-1]  # popped last: the text it closes is read at its rate
        outer = self._frames[-2] if len(self._frames) > 1 else None
        if outer is None or not (outer.skip or outer.collected is not None):
            self._close(frame, outer, end)
        self._frames.pop()

    def _close(self, frame: _Frame, outer: _Frame | None, end: int) -> None:
        name = frame.name
        if outer is None or name == "p":
            self._end_paragraph()
        elif name == "s":
            self._flush()
            self._sentence_break = True
        elif name == "break":
            self._paragraph.append(Segment(source=(frame.start, end), pause=frame.pause))
        elif name == "prosody":
            self._flush()
        elif frame.collected is not None:
            source = _source(self._original, frame.collected) or (frame.start, end)
            self._speak(self._rewrite(frame), source)

    def comment(self, content: str) -> None:
        self._event()

    def startCDATA(self) -> None:
        self._event()

    def endCDATA(self) -> None:
        self._event()

    def processingInstruction(self, target: str, data: str) -> None:
        self._event()

    # The lexical handler's DTD and entity events never come: defusedxml refuses DTDs.
    def startDTD(self, name, public_id, system_id) -> None: ...
    def endDTD(self) -> None: ...
    def startEntity(self, name) -> None: ...
    def endEntity(self, name) -> None: ...

    # elements

    def _warn(self, message: str, where: str | None = None) -> None:
        self._warnings.append(f"SSML {where or self._where()}: {message}")

    def _break(self, attrs: dict[str, str]) -> float:
        time, strength = attrs.get("time"), attrs.get("strength")
        if time is not None:  # time wins over strength, as SSML says
            m = _DURATION.fullmatch(time.strip())
            if not m:
                raise self.error(f"<break> time {time!r} is not a duration like 500ms or 1.5s")
            seconds = float(m.group(1)) / (1000 if m.group(2).lower() == "ms" else 1)
            if seconds > MAX_BREAK:
                self._warn(f"<break> of {time} cut to {MAX_BREAK:g} s")
                seconds = MAX_BREAK
            return seconds
        if strength is None:
            return BREAK_STRENGTHS["medium"]
        if strength.strip() not in BREAK_STRENGTHS:
            raise self.error(f"<break> strength {strength!r} is not one of {', '.join(BREAK_STRENGTHS)}")
        return BREAK_STRENGTHS[strength.strip()]

    def _prosody_rate(self, attrs: dict[str, str], outer: float) -> float:
        for name in _IGNORED_PROSODY:
            if name in attrs:
                self._ignored[name] = None
        value = attrs.get("rate")
        if value is None:
            return outer
        v = value.strip().lower()
        m = _PERCENT.fullmatch(v)
        if v in NAMED_RATES:
            rate = NAMED_RATES[v]
        elif m:
            x = float(m.group(2)) / 100
            rate = outer * {"+": 1 + x, "-": 1 - x, "": x}[m.group(1)]
        elif _FACTOR.fullmatch(v):
            rate = outer * float(v)
        else:
            raise self.error(f"<prosody> rate {value!r} is not a percentage (50%, +20%), a factor "
                             f"(1.5) or one of {', '.join(NAMED_RATES)}")
        if not MIN_RATE <= rate <= MAX_RATE:
            clamped = min(max(rate, MIN_RATE), MAX_RATE)
            self._warn(f"<prosody> rate {value!r} makes {rate:.3g} times the voice's rate; "
                       f"spoken at {clamped:g}, the limit")
        return rate

    def _check(self, name: str, attrs: dict[str, str]) -> None:
        """Refuse the attributes a say-as, sub or phoneme cannot be read without."""
        if name == "say-as":
            if not attrs.get("interpret-as"):
                raise self.error("<say-as> needs an interpret-as attribute")
            fmt = attrs.get("format")
            if _kind(attrs) == "date" and fmt is not None and fmt not in _DATE_FORMATS:
                raise self.error(f"<say-as> date format {fmt!r} is not one of {', '.join(_DATE_FORMATS)}")
        elif name == "sub":
            if "alias" not in attrs:
                raise self.error("<sub> needs an alias attribute")
        elif attrs.get("alphabet", "arpabet").lower() in _ARPABET:
            symbols = attrs.get("ph", "").upper().split()
            if not symbols:
                raise self.error("<phoneme> needs a ph attribute with ARPAbet symbols")
            unknown = [s for s in symbols if s not in _PHONEME_SET]
            if unknown:
                raise self.error(f"<phoneme> ph has symbols that are not ARPAbet: {' '.join(unknown)}")

    def _rewrite(self, frame: _Frame) -> str:
        """The words a closed say-as, sub or phoneme says."""
        content = " ".join("".join(c.text for c in frame.collected).split())
        attrs = frame.attrs
        if frame.name == "sub":
            return attrs["alias"]
        if frame.name == "phoneme":
            alphabet = attrs.get("alphabet", "arpabet").lower()
            if alphabet in _ARPABET:
                return "{" + " ".join(attrs["ph"].upper().split()) + "}"
            # No IPA-to-ARPAbet table on PyPI keeps up with IPA as written (length marks,
            # "r", "ɡ" against "g"), and a wrong guess would say the wrong word.
            self._warn(f"<phoneme> alphabet {alphabet!r} is not supported (only ARPAbet); "
                       f"read as its text {_preview(content)!r}", frame.where)
            return content
        kind = _kind(attrs)
        say = SAY_AS.get(kind)
        if say is None:
            self._unsupported[f'say-as interpret-as="{kind}"'] = None
            return content
        words = say(content, attrs.get("format")) if content else None
        if words is None and content:
            self._warn(f"<say-as> {kind} cannot read {_preview(content)!r}; read as plain text",
                       frame.where)
            return content
        return words or ""

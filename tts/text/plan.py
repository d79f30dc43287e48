"""What to say and when: text (plain or SSML) -> sentences to speak and pauses between them,
each sentence normalized, with the place in the input of every word it says.

    for step in read_plan("Dr. Smith paid $3.50.\\n\\nThanks!", paragraph_pause=0.6):
        step  # Sentence(text="doctor smith paid three dollars and fifty cents.", ...), Pause(0.6), ...

A `Sentence` carries, per normalized word, the span of the written token it reads in the
input ("$3.50" for each of "three dollars and fifty cents"), found by aligning the sentence's
words with the words of each written token said alone (difflib's longest matching blocks);
words that match nothing go to the unmatched tokens between their neighbours. Word timings
and subtitles point back into the user's text through these spans.

Plain text is cut into paragraphs at blank lines and into sentences by `split_sentences`'s
rules; SSML (`tts.text.ssml`) brings its own paragraphs, sentence boundaries, rates and
breaks. Pauses are seconds of silence; a paragraph's end takes ``paragraph_pause``, every
other sentence end ``sentence_pause``, and an SSML break its own length.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Iterator

from .normalize import PUNCTUATION, NothingToSpeakError, normalize
from .sentences import MAX_CHARS, _PARAGRAPH, _fit, _sentences, words

_WRITTEN = re.compile(r"\S+")
_TAG = re.compile(r"<[^>]*>")
# What surrounds a written word without being part of it.
_OPENERS, _CLOSERS = "\"'“‘([{<«", "\"'”’)]}>»,;:!?…"


@dataclass(frozen=True)
class Sentence:
    """One sentence to speak: normalized ``text`` (at most MAX_CHARS), its speaking ``rate``
    (a factor of the call's), and per word of it (`tts.text.sentences.words`) the (start,
    end) characters of the input it reads."""

    text: str
    sources: tuple[tuple[int, int], ...]
    rate: float = 1.0


@dataclass(frozen=True)
class Pause:
    """Seconds of silence."""

    seconds: float


def read_plan(text: str, ssml: bool = False, sentence_pause: float = 0.0, paragraph_pause: float = 0.0,
              max_chars: int = MAX_CHARS) -> Iterator[Sentence | Pause]:
    """The sentences and pauses of ``text``, in order, paragraph by paragraph (so that a book
    starts speaking without normalizing all of it first). The pauses between sentences and
    paragraphs come only between two sentences; SSML breaks come where they are written.
    Raises ``tts.text.ssml.SsmlError`` for malformed SSML before anything is said."""
    steps = _ssml_steps(text, max_chars) if ssml else _text_steps(text, max_chars)
    between = written = 0.0  # chosen pauses wait for a next sentence; written ones do not
    for step in steps:
        if isinstance(step, Pause):
            written += step.seconds
        elif step is _SENTENCE_END:
            between += sentence_pause
        elif step is _PARAGRAPH_END:
            between += paragraph_pause
        else:
            if between + written > 0:
                yield Pause(between + written)
            between = written = 0.0
            yield step
    if written > 0:
        yield Pause(written)


# --- plain text ------------------------------------------------------------------------------

# Boundaries in the stream of steps: the pause each takes is the caller's to choose.
_SENTENCE_END, _PARAGRAPH_END = object(), object()


def _text_steps(text: str, max_chars: int) -> Iterator:
    said = False
    for start, end in _paragraphs(text):
        for i, sentence in enumerate(sentences_of(text, start, end, max_chars)):
            if said:
                yield _PARAGRAPH_END if i == 0 else _SENTENCE_END
            yield sentence
            said = True


def _paragraphs(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for m in _PARAGRAPH.finditer(text):
        yield start, m.start()
        start = m.end()
    yield start, len(text)


def sentences_of(text: str, start: int = 0, end: int | None = None, max_chars: int = MAX_CHARS,
                 rate: float = 1.0) -> list[Sentence]:
    """The sentences of ``text[start:end]`` (one paragraph), with sources in ``text``."""
    end = len(text) if end is None else end
    collapsed, where = _collapse(text, start, end)
    out, cursor = [], 0
    for raw in _sentences(collapsed)[0]:
        at = collapsed.find(raw, cursor)
        cursor = at + len(raw)
        try:
            normalized = normalize(raw)
        except NothingToSpeakError:
            continue
        chunks = _fit(normalized, max_chars)
        said = [w for chunk in chunks for w in words(chunk)]
        sources = word_sources(text, said, where[at], where[cursor - 1] + 1)
        for chunk in chunks:
            n = len(words(chunk))
            out.append(Sentence(chunk, tuple(sources[:n]), rate))
            sources = sources[n:]
    return out


def _collapse(text: str, start: int, end: int) -> tuple[str, list[int]]:
    """text[start:end] with whitespace runs made single spaces and the ends stripped, and
    for each of its characters the index in ``text`` it came from."""
    pieces, where = [], []
    for m in _WRITTEN.finditer(text, start, end):
        if pieces:
            pieces.append(" ")
            where.append(m.start() - 1)
        pieces.append(m.group())
        where.extend(range(m.start(), m.end()))
    return "".join(pieces), where


# --- where each word comes from --------------------------------------------------------------

@functools.lru_cache(maxsize=8192)
def _alone(token: str) -> tuple[str, ...]:
    """The normalized words of one written token, said on its own."""
    try:
        return tuple(_key(w) for w in normalize(token).split())
    except NothingToSpeakError:
        return ()


def _key(word: str) -> str:
    return word.rstrip(PUNCTUATION).lower()


def word_sources(text: str, words: list[str], start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """For each normalized word of ``words`` (read from ``text[start:end]``), the (start,
    end) in ``text`` of the written token it reads, without the quotes, brackets and
    marks around it."""
    written = [(m.start(), m.end()) for m in _WRITTEN.finditer(text, start, len(text) if end is None else end)]
    if not written:
        return [(start, start)] * len(words)
    expected, owner = [], []
    for k, (a, b) in enumerate(written):
        for w in _alone(text[a:b]):
            expected.append(w)
            owner.append(k)
    keys = [_key(w) for w in words]
    claimed: list[int | None] = [None] * len(words)
    matcher = difflib.SequenceMatcher(None, expected, keys, autojunk=False)
    for block in matcher.get_matching_blocks():
        for i in range(block.size):
            claimed[block.b + i] = owner[block.a + i]
    _fill_gaps(claimed, len(written))
    # A token whose words end the sentence lends its period to the sentence, not to a word.
    ends = {k for j, k in enumerate(claimed) if words[j].endswith(".")}
    return [_trim(text, *written[k], k in ends) for k in claimed]


def _fill_gaps(claimed: list[int | None], tokens: int) -> None:
    """Words no token claimed share out the tokens between their claimed neighbours (or
    join the nearer neighbour's token when none is left between them)."""
    j = 0
    while j < len(claimed):
        if claimed[j] is not None:
            j += 1
            continue
        gap_end = j
        while gap_end < len(claimed) and claimed[gap_end] is None:
            gap_end += 1
        before = claimed[j - 1] if j else -1
        after = claimed[gap_end] if gap_end < len(claimed) else tokens
        free = list(range(before + 1, after))
        for n, i in enumerate(range(j, gap_end)):
            if free:
                claimed[i] = free[min(len(free) - 1, n * len(free) // (gap_end - j))]
            else:
                claimed[i] = max(before, 0) if before >= 0 else min(after, tokens - 1)
        j = gap_end


def _trim(text: str, a: int, b: int, period: bool) -> tuple[int, int]:
    while a < b - 1 and text[a] in _OPENERS:
        a += 1
    while b > a + 1 and (text[b - 1] in _CLOSERS or (period and text[b - 1] == ".")):
        b -= 1
    return a, b


# --- SSML ------------------------------------------------------------------------------------

def _ssml_steps(text: str, max_chars: int) -> Iterator:
    from .ssml import parse_ssml

    document = parse_ssml(text)  # SsmlError now, before anything is said
    said = False
    for paragraph in document.paragraphs:
        first = True
        for group in _stretches(paragraph):
            if isinstance(group, Pause):
                yield group
                continue
            for sentence in _stretch_sentences(text, group, max_chars):
                if said:
                    yield _PARAGRAPH_END if first else _SENTENCE_END
                yield sentence
                said, first = True, False


def _stretches(paragraph) -> Iterator:
    """Speech segments of one rate with no <s> boundary between them joined into stretches;
    pauses as they come."""
    group = []
    for segment in paragraph:
        if segment.is_pause:
            if group:
                yield group
                group = []
            yield Pause(segment.pause)
            continue
        if group and (segment.sentence_break_before or segment.rate != group[-1].rate):
            yield group
            group = []
        group.append(segment)
    if group:
        yield group


def _stretch_sentences(original: str, segments, max_chars: int) -> list[Sentence]:
    """The sentences of joined segments, each word's source the span of its segment (a
    say-as, sub or phoneme element whole) or, in plain text, of its written token."""
    joined, owner = "", []
    for segment in segments:
        if joined:
            joined += " "
            owner.append(None)
        owner.extend([segment] * len(segment.text))
        joined += segment.text
    out = []
    for sentence in sentences_of(joined, 0, len(joined), max_chars, segments[0].rate):
        sources = []
        for a, b in sentence.sources:
            segment = owner[a] if a < len(owner) else segments[-1]
            sources.append(_in_original(original, segment, joined, a, b, owner))
        out.append(Sentence(sentence.text, tuple(sources), sentence.rate))
    return out


def _in_original(original: str, segment, joined: str, a: int, b: int, owner) -> tuple[int, int]:
    """A word's span in the joined text -> its span in the SSML: the same written token
    inside the segment's source where the segment is plain text, else the whole element."""
    if segment is None:
        return segment_span(owner, a)
    lo, hi = segment.source
    if " ".join(segment.text.split()) not in " ".join(_TAG.sub(" ", original[lo:hi]).split()):
        return _content(original, lo, hi)  # say-as, sub, phoneme: the words read the element
    token = joined[a:b]
    at = original.find(token, lo, hi)
    return (at, at + len(token)) if at >= 0 else (lo, hi)


def _content(original: str, lo: int, hi: int) -> tuple[int, int]:
    """The written text of an element's span: from its first character outside a tag to its
    last, marks and spaces after it left out."""
    inside = [False] * (hi - lo)
    for m in _TAG.finditer(original, lo, hi):
        inside[m.start() - lo:m.end() - lo] = [True] * (m.end() - m.start())
    chars = [lo + i for i, tag in enumerate(inside) if not tag and not original[lo + i].isspace()]
    while len(chars) > 1 and original[chars[-1]] in _CLOSERS + ".":
        chars.pop()
    return (chars[0], chars[-1] + 1) if chars else (lo, hi)


def segment_span(owner, a: int) -> tuple[int, int]:
    for segment in owner[a:]:
        if segment is not None:
            return segment.source
    return (0, 0)

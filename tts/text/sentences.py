"""Split raw text into sentences and bound their length, for synthesis one chunk at a time.

The acoustic model attends over a whole input at once, and its alignment degrades on very
long inputs; ``MAX_CHARS`` normalized characters keeps each chunk well inside the lengths
it is trained on, and gives streaming synthesis a natural unit.
"""

from __future__ import annotations

import re

from .normalize import PUNCTUATION, NothingToSpeakError, normalize
from .readings import period_ends_sentence

MAX_CHARS = 250
# The smallest bound every piece can meet: a cut override still needs its braces, one
# symbol with its stress digit, and a trailing mark ("{AH0},").
MIN_CHARS = 8

_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
# A sentence may end after . ? ! or an ellipsis, with closing quotes or brackets, before space.
_END = re.compile(r"""(?P<mark>[.?!…]+)["'”’)\]]*(?=\s)""")
_TOKEN = re.compile(r"\{[^{}]*\}\S*|\S+")


# What a mark's reading looks at after it (``period_ends_sentence``, ``starts_sentence``): the
# first significant character, or the next word whole and the first letter after it. Once the
# text after a mark holds that much, no later text can change whether the mark ends a sentence.
_SETTLED = re.compile(r"""[\s"'()\[\]]*(?:[^\sA-Za-z"'()\[\]]|[A-Za-z]+(?:[^\sA-Za-z]|\s+\S))""")


def _sentences(paragraph: str, complete: bool = True) -> tuple[list[str], int]:
    """Cut one paragraph at the marks that end a sentence (see ``period_ends_sentence``).

    Returns the sentences and where the uncut rest starts. A paragraph that is not
    ``complete`` may still grow: cutting stops at the first mark whose reading later text
    could change, and the rest is left uncut.
    """
    out, start = [], 0
    for m in _END.finditer(paragraph):
        rest = paragraph[m.end() :]
        if not complete and not _SETTLED.match(rest):
            break
        mark = m.group("mark")
        if mark == ".":
            word = paragraph[start : m.end("mark")].split()[-1].lstrip("\"'“‘([")
            ends = period_ends_sentence(word, rest)
        else:  # ? ! and ellipses end a sentence unless it goes on in lowercase
            nxt = rest.lstrip()[:1]
            ends = not nxt or not nxt.islower()
        if ends:
            out.append(paragraph[start : m.end()])
            start = m.end()
    if complete:
        out.append(paragraph[start:])
        start = len(paragraph)
    return [s.strip() for s in out if s.strip()], start


def words(normalized: str) -> list[str]:
    """The words of normalized text, each with its mark; an override in braces is one word."""
    return _TOKEN.findall(normalized)


def _split_word(token: str, max_chars: int) -> list[str]:
    """A token longer than the bound: an override is cut between phonemes, a word anywhere
    (apostrophes become cuts, so every piece is still a valid word)."""
    mark = token[-1] if token[-1] in PUNCTUATION else ""
    body = token[: len(token) - len(mark)]
    if body.startswith("{"):
        room = max_chars - len(mark) - 2  # braces
        parts = []
        for symbol in body[1:-1].split():
            # A symbol longer than the room (never a real phoneme) is cut before its stress
            # digit, so that every piece is still letters with at most one digit.
            letters, digit = re.fullmatch(r"(.*?)(\d?)", symbol).groups()
            cuts = [letters[i : i + room - 1] for i in range(0, len(letters), room - 1)]
            parts += cuts[:-1] + [cuts[-1] + digit] if cuts else [digit]
        pieces, current = [], []
        for part in parts:
            if current and len(" ".join(current + [part])) > room:
                pieces.append("{" + " ".join(current) + "}")
                current = []
            current.append(part)
        pieces.append("{" + " ".join(current) + "}")
    else:
        parts = body.split("'")
        pieces = [p[i : i + max_chars] for p in parts for i in range(0, len(p), max_chars)]
        if len(pieces[-1]) + len(mark) > max_chars:
            pieces[-1:] = [pieces[-1][:-1], pieces[-1][-1]]
    pieces[-1] += mark
    return pieces


def _fit(sentence: str, max_chars: int) -> list[str]:
    """Break a normalized sentence into chunks of at most ``max_chars``: between clauses
    (after a punctuation mark) where possible, between words otherwise."""
    if len(sentence) <= max_chars:
        return [sentence]
    words = [
        piece
        for token in _TOKEN.findall(sentence)
        for piece in (_split_word(token, max_chars) if len(token) > max_chars else [token])
    ]
    clauses: list[list[str]] = [[]]
    for word in words:
        clauses[-1].append(word)
        if word[-1] in PUNCTUATION:
            clauses.append([])
    chunks: list[str] = []
    current = ""
    for clause in filter(None, clauses):
        text = " ".join(clause)
        if current and len(current) + 1 + len(text) <= max_chars:
            current += " " + text
            continue
        if current:
            chunks.append(current)
            current = ""
        for word in clause if len(text) > max_chars else [text]:
            if current and len(current) + 1 + len(word) > max_chars:
                chunks.append(current)
                current = ""
            current = f"{current} {word}" if current else word
    if current:
        chunks.append(current)
    return chunks


def split_sentences(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Raw text -> normalized chunks, one sentence each where it fits in ``max_chars``.

    Paragraphs (blank lines) always end a sentence; single line breaks are spaces.
    Sentences with nothing to speak are skipped; if none is left, ``NothingToSpeakError``.
    Every chunk matches ``normalize``'s output format and is at most ``max_chars`` long.
    """
    if max_chars < MIN_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_CHARS}, got {max_chars}")
    chunks: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        for sentence in _sentences(" ".join(paragraph.split()))[0]:
            try:
                normalized = normalize(sentence)
            except NothingToSpeakError:
                continue
            chunks += _fit(normalized, max_chars)
    if not chunks:
        preview = text if len(text) <= 40 else text[:37] + "..."
        raise NothingToSpeakError(f"nothing to speak in the text {preview!r}")
    return chunks


class SentenceBuffer:
    """Text that arrives in pieces (tokens from a language model), cut into sentences as soon
    as they are complete.

        buffer = SentenceBuffer()
        buffer.feed("Hello wor")            # []
        buffer.feed("ld. How are")          # ["Hello world."]
        buffer.flush()                      # ["How are"]: the text ended

    A sentence is handed out once no later text can change where it ends, so the sentences
    are exactly those of the whole text: ``split_sentences`` of each gives, in order,
    ``split_sentences`` of all the text fed. They are raw text (whitespace collapsed), not
    normalized.
    """

    def __init__(self):
        self._text = ""  # raw text not handed out yet

    @property
    def pending(self) -> int:
        """Characters fed and not handed out yet."""
        return len(self._text)

    def feed(self, text: str) -> list[str]:
        """Add text; return the sentences it completes."""
        self._text += text
        return self._take(complete=False)

    def flush(self) -> list[str]:
        """The text has ended: return what is left, cut into sentences, and start afresh."""
        return self._take(complete=True)

    def _take(self, complete: bool) -> list[str]:
        *paragraphs, current = _PARAGRAPH.split(self._text)
        out = [s for p in paragraphs for s in _sentences(" ".join(p.split()))[0]]
        collapsed = " ".join(current.split())
        sentences, start = _sentences(collapsed, complete)
        out += sentences
        # The rest keeps its trailing whitespace: a line break may be half a paragraph break.
        self._text = "" if complete else collapsed[start:].strip() + current[len(current.rstrip()):]
        return out

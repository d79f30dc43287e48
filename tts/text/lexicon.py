"""A user's pronunciation lexicon, in CMUdict's format, and a G2P that consults it first.

    ;;; comment lines start with ";;;" or "#"; blank lines are skipped
    TOMATO  T AH0 M AA1 T OW2
    TOMATO(2)  T AH0 M EY1 T OW2   # a trailing comment after " #"
    NGINX  EH1 N JH AH0 N EH2 K S

Words are matched case-insensitively against the normalizer's output, so an entry applies
to any lowercase word the normalizer leaves (single capitals are spelled letters and "a" the
article before any lexicon is asked). Symbols are ARPAbet with a stress digit on every
vowel, as in CMUdict; a line with any other symbol is refused with its line number.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .g2p import G2P, cmudict_lexicon
from .symbols import PHONEMES, VOWELS

log = logging.getLogger(__name__)

Lexicon = dict[str, list[list[str]]]

_PHONEME_SET = frozenset(PHONEMES)
_VOWEL_SET = frozenset(VOWELS)
_COMMENT = (";;;", "#")
_ENTRY = re.compile(r"(?P<word>\S+?)(?:\((?P<variant>\d+)\))?")
_TRAILING_COMMENT = re.compile(r"\s#.*")
# What a normalized token can be; a lexicon word outside it is never looked up.
_LOOKED_UP = re.compile(r"[a-z]+(?:'[a-z]+)*")


class LexiconError(ValueError):
    """A lexicon that cannot be read; the message is one line naming the file and line."""


def parse_lexicon(text: str, name: str = "<string>") -> Lexicon:
    """Lexicon text -> lowercase word -> its pronunciations, the unnumbered one first, then
    ``WORD(2)``, ``WORD(3)``... (lines with the same number keep their order). ``name``
    names the source in errors. Raises ``LexiconError`` for a line without a pronunciation
    or with a symbol that is not a stressed ARPAbet phoneme."""
    entries: dict[str, list[tuple[int, list[str]]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(_COMMENT):
            continue
        head, *symbols = _TRAILING_COMMENT.sub("", stripped).split()
        m = _ENTRY.fullmatch(head)
        if not symbols:
            raise LexiconError(f"{name} line {number}: {head!r} has no pronunciation")
        phonemes = [s.upper() for s in symbols]
        for p in phonemes:
            if p in _VOWEL_SET:
                raise LexiconError(f"{name} line {number}: vowel {p!r} of {head!r} needs a stress "
                                   f"digit ({p}0, {p}1 or {p}2)")
            if p not in _PHONEME_SET:
                raise LexiconError(f"{name} line {number}: {p!r} in the pronunciation of {head!r} "
                                   f"is not an ARPAbet phoneme")
        variant = int(m.group("variant") or 1)
        entries.setdefault(m.group("word").lower(), []).append((variant, phonemes))
    unreachable = [w for w in entries if not _LOOKED_UP.fullmatch(w)]
    if unreachable:
        shown = ", ".join(unreachable[:5]) + (", ..." if len(unreachable) > 5 else "")
        log.warning("%d word(s) of lexicon %s can never be looked up, since normalized text "
                    "holds only letters and apostrophes: %s", len(unreachable), name, shown)
    return {
        word: [p for _, p in sorted(prons, key=lambda vp: vp[0])]  # sorted() is stable
        for word, prons in entries.items()
    }


def load_lexicon(path: str | os.PathLike) -> Lexicon:
    """Read a lexicon file (UTF-8) with ``parse_lexicon``. Raises ``LexiconError`` for a file
    that cannot be read or decoded, naming the line of the first undecodable byte."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LexiconError(f"cannot read lexicon {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LexiconError(f"{path} line {line}: not UTF-8 (byte 0x{data[e.start]:02x})") from None
    return parse_lexicon(text, str(path))


class UserFirstLexicon(Mapping):
    """The user's words, then CMUdict's (loaded on the first word the user's lack)."""

    def __init__(self, user: Mapping[str, Sequence[Sequence[str]]]):
        self.user = {word.lower(): prons for word, prons in user.items()}

    def __getitem__(self, word: str) -> Sequence[Sequence[str]]:
        if word in self.user:
            return self.user[word]
        return cmudict_lexicon()[word]

    def __contains__(self, word: object) -> bool:
        return word in self.user or word in cmudict_lexicon()

    def __iter__(self) -> Iterator[str]:
        yield from self.user
        yield from (w for w in cmudict_lexicon() if w not in self.user)

    def __len__(self) -> int:
        return len(self.user) + sum(w not in self.user for w in cmudict_lexicon())


def user_g2p(lexicon: Mapping[str, Sequence[Sequence[str]]]) -> G2P:
    """A ``G2P`` that pronounces a word from ``lexicon`` (as from ``load_lexicon``) first,
    then from CMUdict, then by the usual fallback (the neural model or the rules)."""
    return G2P(lexicon=UserFirstLexicon(lexicon))

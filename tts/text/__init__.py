"""The text frontend: raw text -> normalized words -> phonemes -> symbol ids.

``to_phonemes(text)`` is ``phonemize(normalize(text))``; ``text_to_ids`` adds the ids and
EOS the acoustic model reads. Any string is accepted: the only error is
``NothingToSpeakError`` (a ``ValueError``) for text with nothing to say. Importing is cheap;
the pronouncing dictionary loads on first use.
"""

import re

from .g2p import G2P, default_g2p, word_to_phonemes
from .normalize import NothingToSpeakError, normalize, unspeakable
from .sentences import MAX_CHARS, SentenceBuffer, split_sentences
from .symbols import (
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    PHONEMES,
    PUNCTUATION,
    SYMBOL_TO_ID,
    SYMBOLS,
    WORD,
    ids_to_symbols,
    symbols_to_ids,
)

__all__ = [
    "EOS", "EOS_ID", "G2P", "MAX_CHARS", "NothingToSpeakError", "PAD", "PAD_ID", "PHONEMES",
    "PUNCTUATION", "SYMBOLS", "SentenceBuffer", "SYMBOL_TO_ID", "WORD", "default_g2p", "ids_to_symbols", "unspeakable",
    "normalize", "phonemize", "phonemize_words", "split_sentences", "symbols_to_ids", "text_to_ids",
    "to_phonemes", "word_to_phonemes",
]

_PUNCT = "".join(PUNCTUATION)
# An override in braces (spaces inside), one punctuation mark, or a run of anything else.
# Normalized text only holds the first two and words; the last keeps stray input harmless.
_TOKENS = re.compile(rf"\{{[^{{}}]*\}}|[{re.escape(_PUNCT)}]|[^\s{{}}{re.escape(_PUNCT)}]+")


def phonemize(normalized: str, g2p: G2P | None = None) -> list[str]:
    return phonemize_words(normalized, g2p)[0]


def phonemize_words(normalized: str, g2p: G2P | None = None) -> tuple[list[str], list[tuple[int, int]]]:
    """Normalized text -> symbols: each word's phonemes, ``WORD`` between words, and the
    punctuation symbols where the text had them.

    A mark follows its word directly and the ``WORD`` boundary comes after it:
    "hello, world." -> ``HH AH0 L OW1 , ␣ W ER1 L D .``, so a pause and a word boundary
    are never confused. There is never a leading or trailing ``WORD``, never two in a row;
    punctuation before the first word and a mark repeated back to back are dropped. Only
    symbols of ``SYMBOLS`` other than PAD and EOS come out.

    ``phonemize_words`` also returns, per word of ``normalized`` (``sentences.words``), the [start, end)
    of its phonemes among the symbols (empty for a word with none). Raises
    ``NothingToSpeakError`` if no word has any phoneme.
    """
    g2p = g2p or default_g2p()
    out: list[str] = []  # stays empty until a word has phonemes
    spans: list[tuple[int, int]] = []
    for token in _TOKENS.findall(normalized):
        if token in PUNCTUATION:
            if out and out[-1] != token:
                out.append(token)
            continue
        phonemes = g2p.word_to_phonemes(token)
        if phonemes:
            if out:
                out.append(WORD)
            out.extend(phonemes)
        spans.append((len(out) - len(phonemes), len(out)))
    if not out:
        raise NothingToSpeakError(f"nothing to speak in {normalized!r}")
    return out, spans


def to_phonemes(text: str) -> list[str]:
    """Any text -> symbols (see ``phonemize``). Raises only ``NothingToSpeakError``."""
    return phonemize(normalize(text))


def text_to_ids(text: str) -> list[int]:
    """Any text -> symbol ids for the acoustic model, ending with ``EOS_ID``."""
    return symbols_to_ids(to_phonemes(text), add_eos=True)

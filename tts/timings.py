"""When each word and phoneme is heard, from the acoustic model's alignment.

The alignment (frames x symbols) says which symbol each mel frame says; each frame is
``hop_length`` samples of the output, so a symbol's frames are its exact time, for every
vocoder and speaking rate. A word is the symbols of its phonemes (`tts.text.phonemize_words`)
and, as written, the span of the input it reads (`tts.text.plan.Sentence.sources`): the words
a written token expands to ("$3.50": "three dollars and fifty cents") are one timing.

Times are seconds from the start of the audio of one call; offsets and lengths are
characters of the text given to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tts.text.symbols import PHONEMES

_PHONEMES = frozenset(PHONEMES)


@dataclass(frozen=True)
class WordTiming:
    """One word as written in the input, with the quotes and marks around it, ``start``/``end``
    in seconds of the output audio, ``offset``/``length`` the characters of the word itself in
    the input text (offset -1: not known); ``sentence_end``: the last word of a sentence."""

    word: str
    start: float
    end: float
    offset: int
    length: int
    sentence_end: bool = False


_BEFORE, _AFTER = "\"'“‘([«", ",.?!;:…\"'”’)]»"


def as_written(text: str, a: int, b: int) -> str:
    """The word text[a:b] with the quotes, brackets and marks written against it."""
    while a > 0 and text[a - 1] in _BEFORE:
        a -= 1
    while b < len(text) and text[b] in _AFTER:
        b += 1
    return text[a:b]


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme (ARPAbet, with stress), ``start``/``end`` in seconds of the output audio."""

    phoneme: str
    start: float
    end: float


def symbol_frames(alignment: np.ndarray) -> np.ndarray:
    """Alignment (frames, symbols) -> each symbol's [start, end) frames (symbols, 2): each
    frame goes to the symbol it weighs most, never back to an earlier one (a symbol no frame
    says gets an empty span where it would be)."""
    frames, symbols = alignment.shape
    if frames == 0:
        return np.zeros((symbols, 2), np.int64)
    owner = np.maximum.accumulate(alignment.argmax(axis=1))  # (frames,)
    ids = np.arange(symbols)
    return np.stack([np.searchsorted(owner, ids, "left"), np.searchsorted(owner, ids, "right")], axis=1)


def sentence_timings(phonemes: list[str], word_spans: list[tuple[int, int]], alignment: np.ndarray,
                     sources: tuple[tuple[int, int], ...] | None, text: str, words: list[str],
                     start: float, seconds_per_frame: float) -> tuple[list[WordTiming], list[PhonemeTiming]]:
    """The timings of one sentence whose audio starts ``start`` seconds into the output.

    phonemes: its symbols; word_spans: per normalized word, its symbols [a, b); alignment
    (frames, symbols, EOS included); sources: per word, its span in ``text`` (None: unknown,
    the normalized words stand in); words: the normalized words."""
    spans = symbol_frames(alignment)
    at = lambda frame: round(start + float(frame) * seconds_per_frame, 6)  # noqa: E731
    phoneme_timings = [PhonemeTiming(p, at(spans[i, 0]), at(spans[i, 1]))
                       for i, p in enumerate(phonemes) if p in _PHONEMES and spans[i, 1] > spans[i, 0]]
    word_timings: list[WordTiming] = []
    previous = None
    for j, (a, b) in enumerate(word_spans):
        if b <= a:
            continue  # a word with nothing to say
        first, last = spans[a:b, 0].min(), spans[a:b, 1].max()
        source = sources[j] if sources is not None else None
        if source is not None and source == previous and word_timings:
            merged = word_timings[-1]
            word_timings[-1] = WordTiming(merged.word, merged.start, at(last), merged.offset, merged.length)
            continue
        if source is None:
            word_timings.append(WordTiming(words[j], at(first), at(last), -1, 0))
        else:
            word_timings.append(WordTiming(as_written(text, *source), at(first), at(last), source[0],
                                           source[1] - source[0]))
        previous = source
    if word_timings:
        last = word_timings[-1]
        word_timings[-1] = WordTiming(last.word, last.start, last.end, last.offset, last.length, True)
    return word_timings, phoneme_timings

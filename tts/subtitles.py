"""Word timings -> subtitle cues -> WebVTT or SubRip text.

    words = [WordTiming("Hello,", 0.12, 0.48, 0, 6), WordTiming("world.", 0.55, 0.98, 7, 6)]
    write_subtitles("out.vtt", words)

Times are seconds from the start of the output audio; offsets and lengths are characters of
the original input text, so a cue can be traced back to what the user wrote.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tts.files import write_text_atomic
from tts.timings import WordTiming

# Readable subtitles: a line of at most 42 characters (a common limit for one subtitle line), up to
# seven words, on screen for at most three seconds.
MAX_WORDS, MAX_SECONDS, MAX_CHARS = 7, 3.0, 42
# Silence longer than this between two words starts a new cue (a <break>, a paragraph).
MAX_GAP = 1.0

_SENTENCE_END = re.compile(r"""[.?!…]["'”’)\]]*$""")
_FORMATS = (".vtt", ".srt")


@dataclass(frozen=True)
class Cue:
    """One subtitle: the words shown together, from the first one's start to the last one's end."""

    words: tuple[WordTiming, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def text(self) -> str:
        return " ".join(" ".join(w.word.split()) for w in self.words)


def _check(words: Sequence[WordTiming]) -> None:
    for i, w in enumerate(words):
        if not 0 <= w.start <= w.end:
            raise ValueError(f"word {i} ({w.word!r}) has times {w.start}-{w.end} s; "
                             "they must be 0 <= start <= end")
        if i and w.start < words[i - 1].start:
            raise ValueError(f"word {i} ({w.word!r}) starts at {w.start} s, before the word "
                             f"ahead of it ({words[i - 1].start} s)")


def cues(
    words: Iterable[WordTiming],
    max_words: int = MAX_WORDS,
    max_seconds: float = MAX_SECONDS,
    max_chars: int = MAX_CHARS,
    max_gap: float = MAX_GAP,
) -> list[Cue]:
    """Group words, in the order spoken, into cues of at most ``max_words`` words,
    ``max_seconds`` from first start to last end and ``max_chars`` characters of text. A
    sentence end (``WordTiming.sentence_end`` where the engine marks them, else a word
    ending in . ? !) closes a cue, and a silence of more than
    ``max_gap`` seconds starts one. A single word over the limits is a cue of its own.
    Words without text are skipped. ValueError if times go backwards or below zero."""
    words = [w for w in words if w.word.strip()]
    _check(words)
    marked = any(w.sentence_end for w in words)
    out: list[Cue] = []
    current: list[WordTiming] = []
    for w in words:
        if current:
            text = Cue(tuple(current + [w])).text
            if (len(current) >= max_words or w.end - current[0].start > max_seconds
                    or len(text) > max_chars or w.start - current[-1].end > max_gap):
                out.append(Cue(tuple(current)))
                current = []
        current.append(w)
        if w.sentence_end if marked else _SENTENCE_END.search(w.word.rstrip()):
            out.append(Cue(tuple(current)))
            current = []
    if current:
        out.append(Cue(tuple(current)))
    return out


def _timestamp(seconds: float, decimal: str) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def to_webvtt(cues: Iterable[Cue]) -> str:
    """WebVTT: the "WEBVTT" header, then each cue as HH:MM:SS.mmm --> HH:MM:SS.mmm and its
    text, with & < > escaped as WebVTT requires (so no cue text can hold "-->")."""
    blocks = ["WEBVTT\n"]
    for cue in cues:
        text = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n{text}\n")
    return "\n".join(blocks)


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip: cues numbered from 1, HH:MM:SS,mmm --> HH:MM:SS,mmm, the text, a blank line."""
    return "\n".join(
        f"{i}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n{cue.text}\n"
        for i, cue in enumerate(cues, 1)
    )


def write_subtitles(path: str | os.PathLike, words: Iterable[WordTiming], **cue_limits) -> Path:
    """Write ``words`` as subtitles at ``path``, WebVTT for ``.vtt`` and SubRip for ``.srt``
    (UTF-8), grouped by ``cues(words, **cue_limits)``. The file appears whole or not at all:
    it is written beside the target and renamed into place. ValueError for another suffix;
    ``AudioFileError`` (a ValueError) for a folder where nothing can be written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"subtitles are written as .vtt (WebVTT) or .srt (SubRip), not {path.name!r}")
    grouped = cues(words, **cue_limits)
    return write_text_atomic(path, to_webvtt(grouped) if suffix == ".vtt" else to_srt(grouped))

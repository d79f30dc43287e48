"""Build a teacher-voice training corpus: texts spoken by espeak-ng, in the LJ Speech layout.

    python -m train.corpus --text metadata.csv --out corpus/ [--voice en-us] [--limit N]

The texts come from any ``id|text|...`` file (LJ Speech's ``metadata.csv`` among them) or a
plain file of one sentence per line. Each text is normalized by the engine's own frontend
before espeak-ng speaks it, so the teacher says exactly the words the acoustic model will
read; the audio is stored as 16 kHz mono 16-bit WAV under ``wavs/`` with a ``metadata.csv``
beside it. Clips already present are kept, so an interrupted build continues where it
stopped, and every file is written atomically.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from tts.audio import DEFAULT_AUDIO, normalize_peak, to_mono_16k, write_audio
from tts.text import NothingToSpeakError, normalize

ESPEAK = "espeak-ng"


class CorpusError(RuntimeError):
    """The corpus cannot be built as asked (no espeak-ng, no texts, an unknown voice)."""


def read_texts(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(id, text) pairs from an ``id|text|...`` file, or from one text per line (ids numbered)."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and all("|" in line for line in lines):
        return [(line.split("|")[0].strip(), line.split("|")[1].strip()) for line in lines]
    return [(f"clip{i:06d}", line.strip()) for i, line in enumerate(lines)]


def check_voice(voice: str) -> None:
    """espeak-ng quietly falls back to its default voice for an unknown name; refuse instead.
    A voice is a language ("en-us"), a voice name or file, optionally with a variant ("+f3")."""
    listing = subprocess.run([ESPEAK, "--voices"], capture_output=True, text=True, timeout=30).stdout
    known = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            known.update(f.lower() for f in (fields[1], fields[3], fields[4]))
    if voice.split("+")[0].lower() not in known:
        raise CorpusError(f"espeak-ng has no voice {voice!r} (see espeak-ng --voices)")


def speak(text: str, voice: str = "en-us", words_per_minute: int = 165) -> tuple:
    """espeak-ng's audio for ``text``: ((T,) float32 at its own rate, that rate)."""
    proc = subprocess.run([ESPEAK, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
                          capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        raise CorpusError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return audio, rate


def build(texts: list[tuple[str, str]], out: Path, voice: str = "en-us", words_per_minute: int = 165,
          workers: int = 2, progress: bool = True) -> int:
    """Speak every text into ``out/wavs`` and write ``out/metadata.csv``; returns the clip count."""
    if shutil.which(ESPEAK) is None:
        raise CorpusError("espeak-ng is not installed (apt-get install espeak-ng)")
    check_voice(voice)
    (out / "wavs").mkdir(parents=True, exist_ok=True)

    def one(item: tuple[str, str]) -> str | None:
        clip_id, text = item
        try:
            words = normalize(text)
        except NothingToSpeakError:
            return None
        wav = out / "wavs" / f"{clip_id}.wav"
        if not wav.is_file():
            audio, rate = speak(words, voice, words_per_minute)
            write_audio(wav, normalize_peak(to_mono_16k(audio, rate)), DEFAULT_AUDIO.sample_rate)
        return f"{clip_id}|{text}|{words}"

    with ThreadPoolExecutor(max(1, workers)) as pool:  # espeak-ng runs in its own processes
        rows = list(tqdm(pool.map(one, texts), total=len(texts), desc="corpus", unit="clip", disable=not progress))
    rows = [row for row in rows if row is not None]
    if not rows:
        raise CorpusError("no text with anything to speak")
    meta = out / "metadata.csv"
    tmp = meta.with_suffix(".csv.part")
    tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, meta)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.corpus", description=__doc__.split("\n\n")[0])
    p.add_argument("--text", required=True, type=Path, help="id|text|... file, or one text per line")
    p.add_argument("--out", required=True, type=Path, help="corpus folder to create or continue")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice (default en-us)")
    p.add_argument("--wpm", type=int, default=165, help="speaking rate in words per minute (default 165)")
    p.add_argument("--limit", type=int, help="only the first N texts")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="espeak-ng processes at once")
    args = p.parse_args(argv)
    try:
        texts = read_texts(args.text)[: args.limit]
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: cannot read {args.text}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 2
    try:
        n = build(texts, args.out, args.voice, args.wpm, args.workers)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{n} clips in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

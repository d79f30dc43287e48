"""The ``synthesize`` command (also ``python -m tts``).

Exit codes (tts.command): 0 success; 2 bad usage or input (no text, nothing speakable, an
unreadable text file, an output that cannot be written, an unknown or mismatched vocoder,
backend or weight format, a --voice that is not a voice folder), as for tts-server and the
demo; 1 the engine cannot run as asked (CUDA asked for but absent, an unknown device, a
damaged voice); 130 on Ctrl-C, 143 on SIGTERM, 129 on SIGHUP, leaving no partial output file.
Every error is one line on stderr.

Arguments and text are checked before torch and the models are imported, so that --help and
every usage error answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tts.command import EXIT_OK, OneLineParser, UsageError, check_voice_folder, run_command
from tts.errors import AudioFileError, check_rate, check_seed
from tts.files import check_writable
from tts.vocoder.choice import BACKEND_CHOICES, VOCODER_CHOICES, WEIGHT_CHOICES, ChoiceError, VocoderChoice


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="synthesize", description="Speak English text as 16 kHz audio.")
    p.add_argument("text", nargs="?", help="text to speak (default: --text-file, else standard input)")
    p.add_argument("--text-file", type=Path, help="read the text from this UTF-8 file")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, default=Path("out.wav"), help="output .wav or .flac (default out.wav)")
    out.add_argument("--raw", action="store_true", help="write 16-bit PCM to standard output as it is generated")
    p.add_argument("--voice", type=Path, help="voice folder (default: the bundled voice)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    add_vocoder_options(p)
    p.add_argument("--seed", type=int, default=0, help="random seed of the vocoder's sampling")
    p.add_argument("--rate", type=float, default=1.0, help="speaking rate, 0.5 to 2 (default 1)")
    p.add_argument("--ssml", action="store_true",
                   help="read the text as SSML (also when it starts with markup: <speak>, <?xml, <!DOCTYPE)")
    p.add_argument("--lexicon", type=Path, help="pronunciations in CMUdict's format, before the built-in ones")
    p.add_argument("--sentence-pause", type=float, default=0.0, metavar="SECONDS",
                   help="silence added between sentences (default 0)")
    p.add_argument("--paragraph-pause", type=float, default=0.0, metavar="SECONDS",
                   help="silence added between paragraphs (default 0)")
    p.add_argument("--timings", type=Path, metavar="FILE.json",
                   help="write each word's and phoneme's start and end time (and the words' places in the text)")
    p.add_argument("--subtitles", type=Path, metavar="FILE.vtt|FILE.srt", help="write subtitles of the speech")
    p.add_argument("--list-backends", action="store_true", help="list vocoder backends and whether they are usable")
    return p


def add_vocoder_options(p: argparse.ArgumentParser) -> None:
    """--vocoder, --backend and --weights, as every command that speaks takes them."""
    p.add_argument("--vocoder", default="auto", metavar="{" + ",".join(VOCODER_CHOICES) + "}",
                   help="which vocoder speaks (default auto: the voice's own choice)")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="the WaveNet's kernel (default auto: the fastest usable here)")
    p.add_argument("--weights", default="auto", choices=WEIGHT_CHOICES,
                   help="WaveNet weight precision: bf16 is faster on the numba backend (default auto: the "
                        "voice's own, where the kernel runs it, else fp32)")


def check_vocoder_options(args) -> VocoderChoice:
    """The --vocoder/--backend/--weights choice as ``args.choice``, checked once (UsageError
    for an unknown or mismatched one); reads the older ``--vocoder numba`` as ``--vocoder
    wavenet --backend numba``."""
    try:
        args.choice = VocoderChoice.parse(args.vocoder, args.backend, args.weights)
    except ChoiceError as e:
        raise UsageError(str(e)) from None
    return args.choice


def _read_text(args) -> str:
    if args.text is not None and args.text_file is not None:
        raise UsageError("give the text as an argument or with --text-file, not both")
    if args.text_file is not None:
        try:
            return args.text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read text file {args.text_file}: {getattr(e, 'strerror', None) or e}") from None
    if args.text is not None:
        return args.text
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no text given: pass TEXT, --text-file or pipe text to standard input")
    # Bytes that are not UTF-8 become U+FFFD, which the check of speakable text then counts.
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def _shown(chars: list[str], most: int = 3) -> str:
    distinct = list(dict.fromkeys(chars))[:most]
    return ", ".join(f"{ch!r} (U+{ord(ch):04X})" if ch.isprintable() else f"U+{ord(ch):04X}" for ch in distinct)


def _check_speakable(text: str) -> None:
    """Refuse text that is mostly characters the frontend cannot say (binary data, another
    script); warn, in one line, of any it will skip."""
    from tts.text import unspeakable

    dropped = unspeakable(text)
    if not dropped:
        return
    visible = sum(not ch.isspace() for ch in text)
    if 2 * len(dropped) > visible:
        raise UsageError(f"the text is mostly not speakable: {len(dropped)} of {visible} characters "
                         f"have no English reading (such as {_shown(dropped)})")
    print(f"synthesize: warning: skipping {len(dropped)} character(s) with no English reading: "
          f"{_shown(dropped)}", file=sys.stderr)


def _list_backends() -> int:
    from tts.vocoder.choice import BACKENDS, VOCODERS, WAVENET, backend_status

    for name in BACKENDS:
        ok, why = backend_status(name)
        print(f"{WAVENET} --backend {name:6s} {'available' if ok else 'unavailable: ' + why}")
    for name in VOCODERS:
        if name != WAVENET:
            print(f"{name:24s} available (no network: phase from the mel alone)")
    return 0


def _check_output(path: Path) -> None:
    if path.suffix.lower() not in (".wav", ".flac"):
        raise UsageError(f"output {path} must end in .wav or .flac")
    check_writable(path)  # AudioFileError: a usage error, exit 2


def _check_inputs(args) -> tuple[str, list]:
    """Everything that can be checked before the (slow) voice load: the text and its plan
    (normalized sentences and pauses, `tts.text.plan`)."""
    from tts.text import NothingToSpeakError
    from tts.text.plan import Sentence, read_plan
    from tts.text.ssml import SsmlError, is_ssml

    check_vocoder_options(args)
    for name in ("sentence_pause", "paragraph_pause"):
        if not 0 <= getattr(args, name) <= 60:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 to 60 seconds, got {getattr(args, name)}")
    if args.timings is not None:
        if args.timings.suffix.lower() != ".json":
            raise UsageError(f"--timings {args.timings} must end in .json")
        check_writable(args.timings)
    if args.subtitles is not None:
        if args.subtitles.suffix.lower() not in (".vtt", ".srt"):
            raise UsageError(f"--subtitles {args.subtitles} must end in .vtt or .srt")
        check_writable(args.subtitles)
    if args.lexicon is not None:
        from tts.text.lexicon import LexiconError, load_lexicon

        try:
            args.lexicon = load_lexicon(args.lexicon)
        except LexiconError as e:
            raise UsageError(str(e)) from None
    if args.voice is not None:
        check_voice_folder(args.voice)
    text = _read_text(args)
    for check, name in ((check_rate, "rate"), (check_seed, "seed")):
        try:
            check(getattr(args, name))
        except ValueError as e:
            raise UsageError(f"--{name}: {e}") from None
    if not args.raw:
        _check_output(args.output)
    ssml = args.ssml or is_ssml(text)
    if not ssml:
        _check_speakable(text)
    try:
        plan = list(read_plan(text, ssml, args.sentence_pause, args.paragraph_pause))
    except SsmlError as e:
        raise UsageError(str(e)) from None
    if not any(isinstance(step, Sentence) for step in plan):
        raise UsageError(str(NothingToSpeakError(f"nothing to speak in the text {text[:40]!r}")))
    return text, plan


def _progress(total_chars: int):
    from tqdm import tqdm

    show = sys.stderr.isatty() and total_chars > 200
    return tqdm(total=total_chars, unit="char", desc="synthesize", disable=not show, leave=False)


def run(args, text: str, plan: list) -> int:
    from tts.audio import AudioWriter, to_pcm16
    from tts.synthesizer import Synthesizer

    synth = Synthesizer.load(args.voice, device=args.device, vocoder=args.choice, lexicon=args.lexicon)
    chunks = synth.stream_sentences(plan, seed=args.seed, rate=args.rate, text=text)
    words, phonemes = [], []
    with _progress(sum(len(step.text) for step in plan if hasattr(step, "text"))) as bar:
        if args.raw:
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(to_pcm16(chunk.audio).astype("<i2").tobytes())
                out.flush()
                words += chunk.words
                phonemes += chunk.phoneme_timings
                if chunk.last:
                    bar.update(len(chunk.text))
        else:
            with AudioWriter(args.output, synth.sample_rate) as writer:
                for chunk in chunks:
                    writer.write(chunk.audio)
                    words += chunk.words
                    phonemes += chunk.phoneme_timings
                    if chunk.last:
                        bar.update(len(chunk.text))
    _write_timings(args, words, phonemes)
    return EXIT_OK


def _write_timings(args, words: list, phonemes: list) -> None:
    """The --timings JSON and the --subtitles file, each written whole or not at all."""
    from dataclasses import asdict

    from tts.files import write_text_atomic
    from tts.subtitles import write_subtitles

    if args.timings is not None:
        record = {"words": [asdict(w) for w in words], "phonemes": [asdict(p) for p in phonemes]}
        write_text_atomic(args.timings, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    if args.subtitles is not None:
        write_subtitles(args.subtitles, words)


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.list_backends:
            return _list_backends()
        return run(args, *_check_inputs(args))

    return run_command("synthesize", body, usage=(AudioFileError,))


if __name__ == "__main__":
    sys.exit(main())

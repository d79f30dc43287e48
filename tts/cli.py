"""The ``synthesize`` command (also ``python -m tts``).

Exit codes: 0 success; 2 bad usage or input (no text, nothing speakable, unreadable text
file, missing output folder, unknown backend); 1 runtime failure (CUDA asked for but absent,
broken or missing voice). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE_ERROR, RUNTIME_ERROR = 2, 1
BACKEND_CHOICES = ("auto", "torch", "numba", "cuda", "griffin-lim")


class UsageError(Exception):
    pass


class OneLineParser(argparse.ArgumentParser):
    """Usage errors raise UsageError, to be printed as one line (argparse would print the
    whole usage first and exit)."""

    def error(self, message: str):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="synthesize", description="Speak English text as 16 kHz audio.")
    p.add_argument("text", nargs="?", help="text to speak (default: --text-file, else standard input)")
    p.add_argument("--text-file", type=Path, help="read the text from this UTF-8 file")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, default=Path("out.wav"), help="output .wav or .flac (default out.wav)")
    out.add_argument("--raw", action="store_true", help="write 16-bit PCM to standard output as it is generated")
    p.add_argument("--voice", type=Path, help="voice folder (default: the bundled voice)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    p.add_argument("--vocoder", default="auto", choices=BACKEND_CHOICES, help="vocoder backend (default auto)")
    p.add_argument("--weights", default="fp32", choices=("fp32", "bf16"),
                   help="vocoder weight precision: bf16 is faster on the numba backend (default fp32)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the vocoder's sampling")
    p.add_argument("--rate", type=float, default=1.0, help="speaking rate, 0.5 to 2 (default 1)")
    p.add_argument("--list-backends", action="store_true", help="list vocoder backends and whether they are usable")
    return p


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
    return sys.stdin.read()


def _list_backends() -> int:
    from kernels import BACKENDS, backend_status

    for name in BACKENDS:
        ok, why = backend_status(name)
        print(f"{name:11s} {'available' if ok else 'unavailable: ' + why}")
    print(f"{'griffin-lim':11s} available (no WaveNet: phase from the mel alone)")
    return 0


def _check_inputs(args) -> str:
    """Everything that can be checked before the (slow) voice load."""
    from tts.synthesizer import MAX_RATE, MIN_RATE
    from tts.text import split_sentences

    text = _read_text(args)
    if not MIN_RATE <= args.rate <= MAX_RATE:
        raise UsageError(f"--rate {args.rate} is outside [{MIN_RATE}, {MAX_RATE}]")
    if not args.raw:
        if args.output.suffix.lower() not in (".wav", ".flac"):
            raise UsageError(f"output {args.output} must end in .wav or .flac")
        if not args.output.parent.is_dir():
            raise UsageError(f"output folder does not exist: {args.output.parent}")
    try:
        split_sentences(text)
    except ValueError as e:  # NothingToSpeakError
        raise UsageError(str(e)) from None
    return text


def _progress(total_chars: int):
    from tqdm import tqdm

    show = sys.stderr.isatty() and total_chars > 200
    return tqdm(total=total_chars, unit="char", desc="synthesize", disable=not show, leave=False)


def run(args) -> int:
    from tts.audio import AudioWriter, to_pcm16
    from tts.synthesizer import Synthesizer

    text = _check_inputs(args)
    synth = Synthesizer.load(args.voice, device=args.device, vocoder=args.vocoder, weights=args.weights)
    chunks = synth.stream(text, seed=args.seed, rate=args.rate)
    with _progress(len(text)) as bar:
        if args.raw:
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(to_pcm16(chunk.audio).astype("<i2").tobytes())
                out.flush()
                if chunk.last:
                    bar.update(len(chunk.text))
            return 0
        with AudioWriter(args.output, synth.sample_rate) as writer:
            for chunk in chunks:
                writer.write(chunk.audio)
                if chunk.last:
                    bar.update(len(chunk.text))
    return 0


def main(argv: list[str] | None = None) -> int:
    from tts.audio import AudioFileError
    from tts.synthesizer import SynthesisError

    try:
        args = build_parser().parse_args(argv)
        if args.list_backends:
            return _list_backends()
        return run(args)
    except (UsageError, AudioFileError) as e:
        print(f"synthesize: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except SynthesisError as e:
        print(f"synthesize: error: {e}", file=sys.stderr)
        return RUNTIME_ERROR
    except BrokenPipeError:  # the player on the other end of --raw went away
        return 0
    except KeyboardInterrupt:
        print("synthesize: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``synthesize`` command (also ``python -m tts``)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synthesize", description="Speak English text as 16 kHz audio.")
    p.add_argument("text", nargs="?", help="text to speak (default: standard input)")
    p.add_argument("-o", "--output", default="out.wav", help="output .wav or .flac file")
    p.add_argument("--voice", help="voice folder (default: the bundled voice)")
    return p


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("synthesize: no voice installed yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

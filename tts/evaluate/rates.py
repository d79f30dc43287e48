"""How well speech is understood at each speaking rate: ``python -m tts.evaluate.rates
[--voice DIR] [--vocoder auto] [--rates 0.5 0.75 1 1.25 1.5 1.75 2] [--seed 0]``.

For each rate, the voice reads the same eight sentences (about 140 words, the speed bench's
texts) and Whisper tiny.en transcribes them (the evaluation's recognizer, `tts.evaluate.judges`):
one row per rate with the word error rate, its 95% bootstrap interval over the sentences, and
the duration against rate 1. Needs the ``eval`` extra.
"""

from __future__ import annotations

import sys
from pathlib import Path


from tts.command import OneLineParser, UsageError, run_command

RATES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def texts() -> list[str]:
    from tts.bench import PARAGRAPH_SENTENCES, SENTENCE

    return [SENTENCE, *PARAGRAPH_SENTENCES]


def rate_curve(synth, recognizer, rates=RATES, seed: int = 0) -> list[dict]:
    """One record per rate: errors and words per sentence, WER with its interval, seconds."""
    from tts.evaluate.judges import normalize_words
    from tts.evaluate.metrics import bootstrap_interval, word_errors, wer_statistic

    records = []
    for rate in rates:
        errors, words, seconds = [], [], 0.0
        for text in texts():
            audio = synth.synthesize(text, seed=seed, rate=rate)
            seconds += len(audio) / synth.sample_rate
            reference, heard = normalize_words(text), normalize_words(recognizer(audio))
            errors.append(word_errors(reference, heard))
            words.append(len(reference))
        wer = sum(errors) / sum(words)
        records.append({"rate": rate, "wer": wer, "wer_ci": bootstrap_interval(wer_statistic(errors, words), len(words)),
                        "seconds": seconds})
    normal = next((r["seconds"] for r in records if r["rate"] == 1.0), None)
    for r in records:
        r["duration_vs_rate_1"] = None if normal is None else r["seconds"] / normal
    return records


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        from tts.cli import add_vocoder_options, check_vocoder_options
        from tts.errors import check_rate

        p = OneLineParser(prog="python -m tts.evaluate.rates", description=__doc__.splitlines()[0])
        p.add_argument("--voice", type=Path, help="voice folder (default: the bundled voice)")
        add_vocoder_options(p)
        p.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="speaking rates to read at")
        p.add_argument("--seed", type=int, default=0, help="the vocoder's seed")
        args = p.parse_args(argv)
        for rate in args.rates:
            try:
                check_rate(rate)
            except ValueError as e:
                raise UsageError(f"--rates: {e}") from None
        choice = check_vocoder_options(args)
        from tts import Synthesizer
        from tts.evaluate.judges import Recognizer, check_installed

        check_installed(["wer"])
        synth = Synthesizer.load(args.voice, device="cpu", vocoder=choice)
        records = rate_curve(synth, Recognizer(1), args.rates, args.seed)
        print(f"voice {args.voice or 'bundled'}, vocoder {synth.vocoder.label}, {len(texts())} sentences")
        print(f"{'rate':>5s} {'WER':>6s} {'95% interval':>15s} {'duration':>9s}")
        for r in records:
            lo, hi = r["wer_ci"]
            duration = "" if r["duration_vs_rate_1"] is None else f"{r['duration_vs_rate_1']:.2f}x"
            print(f"{r['rate']:5.2f} {r['wer']:6.3f} {f'[{lo:.3f}, {hi:.3f}]':>15s} {duration:>9s}")
        return 0

    return run_command("rates", body)


if __name__ == "__main__":
    sys.exit(main())

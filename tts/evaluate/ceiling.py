"""``python -m tts.evaluate.ceiling --corpus CORPUS_DIR [--n 20]``: what the WaveNet's way of
making audio allows at best, judged by DNSMOS on the corpus's held-out teacher audio.

A perfect network would emit exactly the classes of the true signal; what is left of the
teacher's quality is then the ceiling of the representation alone:

    teacher            the corpus audio
    mu-law 8           the audio through 8-bit mu-law (what a plain WaveNet outputs)
    lpc excitation     the linear-prediction excitation of the audio (coefficients from the
                       mel, as the engine computes them), quantized to 8-bit mu-law and
                       filtered back: what the voice's LPC WaveNet outputs
    lpc from mu-law    the same, from audio first stored as 8-bit mu-law (version 1 packs)

Prints one row per system: mean DNSMOS OVRL, SIG and BAK with 95% bootstrap intervals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tts.command import OneLineParser, run_command


def systems(audio: np.ndarray, mel: np.ndarray, order: int = 16) -> dict[str, np.ndarray]:
    """The teacher's audio (frames * hop,) and mel (frames, n_mels) through each representation."""
    from tts.audio import mu_law_decode, mu_law_encode
    from tts.vocoder.wavenet import WaveNetConfig, model_to_signal, signal_to_model

    def mu8(x):
        return mu_law_decode(mu_law_encode(np.clip(x, -1.0, 1.0))).astype(np.float32)

    lpc = WaveNetConfig(lpc_order=order)
    return {
        "teacher": audio,
        "mu-law 8": mu8(audio),
        "lpc excitation": model_to_signal(lpc, mu8(signal_to_model(lpc, audio, mel)), mel)[0],
        "lpc from mu-law": model_to_signal(lpc, mu8(signal_to_model(lpc, mu8(audio), mel)), mel)[0],
    }


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        from tts.audio import DEFAULT_AUDIO, load_audio, mel_spectrogram
        from tts.evaluate.cli import read_heldout
        from tts.evaluate.judges import DNSMOS, check_installed
        from tts.evaluate.metrics import bootstrap_interval, mean_statistic

        p = OneLineParser(prog="python -m tts.evaluate.ceiling", description=__doc__.splitlines()[0])
        p.add_argument("--corpus", type=Path, required=True, help="corpus folder with heldout.csv")
        p.add_argument("--n", type=int, default=20, help="held-out lines, from the top (default 20)")
        args = p.parse_args(argv)
        check_installed(["dnsmos"])
        judge, scores = DNSMOS(1), {}
        for clip in read_heldout(args.corpus, args.n):
            audio = load_audio(clip.audio, DEFAULT_AUDIO)
            mel = mel_spectrogram(audio, DEFAULT_AUDIO)
            audio = np.pad(audio, (0, max(0, len(mel) * DEFAULT_AUDIO.hop_length - len(audio))))
            for name, heard in systems(audio[:len(mel) * DEFAULT_AUDIO.hop_length], mel).items():
                scores.setdefault(name, []).append(judge(heard))
        print(f"| system ({len(next(iter(scores.values())))} held-out lines) | OVRL | SIG | BAK |")
        print("|---|---:|---:|---:|")
        for name, rows in scores.items():
            cells = []
            for key in ("ovrl", "sig", "bak"):
                values = np.array([r[key] for r in rows])
                low, high = bootstrap_interval(mean_statistic(values), len(values))
                cells.append(f"{values.mean():.2f} [{low:.2f}-{high:.2f}]")
            print(f"| {name} | " + " | ".join(cells) + " |")
        return 0

    return run_command("ceiling", body)


if __name__ == "__main__":
    sys.exit(main())

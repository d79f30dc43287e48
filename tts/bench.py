"""End-to-end speed of the pipeline: ``python -m tts.bench [--voice DIR] [--json]``.

For each vocoder backend present: the real-time factor of synthesizing a 20-word sentence and
a 300-word paragraph (synthesis seconds over audio seconds; below 1 is faster than real time)
and the time to first audio of each (from the call to the first streamed chunk), on one
thread, the way ``synthesize`` runs.

``--conditioning`` measures instead where the WaveNet's conditioning spends its time: the
frame network and upsampling, and the per-layer projections, per second of audio in the
runtime's chunks, as numpy runs it (what a voice speaks with on the CPU) and as torch does,
against the projections' floor at the float32 rate of a large matrix product in numpy's BLAS.

Without ``--voice`` it measures a random-weight voice of the shipped model sizes (the
parallel acoustic model) whose every symbol lasts 8 frames (100 ms), close to the pace of
read speech, so the audio has a realistic length for its text. Speed does not depend
on the weights' values, only on the sizes and the length of the audio.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

SENTENCE = ("The old lighthouse keeper climbed the narrow stairs each evening to light the lamp "
            "that guided ships safely into the harbor.")  # 20 words
PARAGRAPH_SENTENCES = [
    "Long before the railway reached the valley, the village lived by the rhythm of the river.",
    "Barges carried grain and timber down to the market towns, and came back loaded with salt, "
    "cloth, and news from the wider world.",
    "Children learned to read the water as other children learned their letters, "
    "knowing from its colour when the spring floods would come.",
    "The miller, a patient man with flour in his beard, kept a ledger of every harvest for forty years.",
    "His records showed good years and lean ones, a fire in the granary, and a winter so cold "
    "that the river froze from bank to bank.",
    "When the first engineers arrived with their maps and instruments, the villagers watched them "
    "with curiosity and some suspicion.",
    "The surveyors measured the fields, marked the old oak trees with paint, and asked questions "
    "about the height of the floods.",
]


# The random-weight voice's pace: 100 ms per symbol, close to read speech.
FRAMES_PER_SYMBOL = 8


def paragraph(words: int = 300) -> str:
    out, n = [], 0
    while n < words:
        for s in PARAGRAPH_SENTENCES:
            out.append(s)
            n += len(s.split())
            if n >= words:
                break
    return " ".join(out)


def bench_voice(path: Path) -> Path:
    """A random-weight voice of the shipped sizes with read-speech pacing (see module doc)."""
    from tts.parallel_model import ParallelConfig, ParallelModel
    from tts.voice import save_model
    from tts.vocoder.wavenet import WaveNet, WaveNetConfig

    torch.manual_seed(0)
    acoustic = ParallelModel(ParallelConfig()).eval()
    with torch.no_grad():
        acoustic.duration_out.weight.zero_()
        acoustic.duration_out.bias.fill_(math.log1p(FRAMES_PER_SYMBOL))
    save_model(path, "acoustic", acoustic)
    save_model(path, "vocoder", WaveNet(WaveNetConfig()))
    return path


def measure(synth, text: str) -> dict:
    start = time.perf_counter()
    first = None
    samples = 0
    for chunk in synth.stream(text):
        if first is None:
            first = time.perf_counter() - start
        samples += len(chunk.audio)
    total = time.perf_counter() - start
    audio_s = samples / synth.sample_rate
    return {"words": len(text.split()), "audio_s": audio_s, "synthesis_s": total,
            "realtime_factor": total / audio_s, "first_audio_ms": 1000 * first}


def blas_peak(size: int = 1024, repeats: int = 9) -> float:
    """One thread's float32 FLOP/s in numpy's BLAS: a size^3 matrix product, the fastest of
    ``repeats``. What the projections, one matrix product each, can at best reach."""
    import numpy as np

    a, b = (np.random.default_rng(i).random((size, size), dtype=np.float32) for i in range(2))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / min(times)


def conditioning_table(voice_dir: Path, repeats: int = 7) -> list[dict]:
    """Milliseconds per second of audio of the voice's conditioning, chunk by chunk as the
    runtime asks for it (`chunk_bounds` over a 2 s mel), numpy and torch, one thread each."""
    import numpy as np

    from tts.voice import load_voice
    from tts.vocoder.inference import Conditioning
    from tts.vocoder.runtime import chunk_bounds

    voice = load_voice(voice_dir, require=("vocoder",))
    config, wavenet = voice.settings("vocoder"), voice.wavenet
    numpy_conditioning = Conditioning(config, voice.arrays("vocoder")[1])
    mel = np.random.default_rng(0).random((160, config.n_mels), dtype=np.float32)  # 2 s of frames
    seconds = len(mel) * config.hop_length / voice.audio.sample_rate
    torch_mel = torch.from_numpy(mel)[None]

    ways = {
        ("numpy", "frame network + upsampling"): lambda a, b: numpy_conditioning.features(mel, a, b),
        ("numpy", "all"): lambda a, b: numpy_conditioning.frames(mel, a, b),
        ("torch", "frame network + upsampling"): lambda a, b: wavenet.upsample_frames(torch_mel, a, b),
        ("torch", "all"): lambda a, b: wavenet.project(wavenet.upsample_frames(torch_mel, a, b)),
    }
    macs = config.cond_channels * 2 * config.residual_channels * config.n_layers  # projections, per sample
    peak = blas_peak()
    floor = 2 * macs * config.hop_length * len(mel) / peak
    rows = []
    with torch.no_grad():
        for (library, part), run in ways.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                for a, b in chunk_bounds(len(mel)):
                    run(a, b)
                times.append(time.perf_counter() - start)
            rows.append({"library": library, "part": part, "ms_per_audio_s": 1000 * sorted(times)[repeats // 2] / seconds})
    rows.append({"library": "floor", "part": f"projections at {peak / 1e9:.0f} GFLOP/s", "ms_per_audio_s": 1000 * floor / seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    from tts import Synthesizer
    from tts.vocoder.choice import AUTO, BACKEND_WEIGHTS, BACKENDS, GRIFFIN_LIM, WEIGHT_CHOICES, available_backends

    p = argparse.ArgumentParser(prog="python -m tts.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", type=Path, help="voice folder (default: random weights, shipped sizes)")
    p.add_argument("--backends", nargs="+", help="vocoder backends, griffin-lim among them "
                   "(default: every available kernel)")
    fast = [name for name in BACKENDS if name != "torch"] + [GRIFFIN_LIM]
    p.add_argument("--paragraph-backends", nargs="+", default=fast,
                   help="backends fast enough for the 300-word paragraph (default numba cuda griffin-lim)")
    p.add_argument("--weights", nargs="+", default=[AUTO], choices=WEIGHT_CHOICES,
                   help="vocoder weight formats to measure; bf16 runs on numba only (default auto: the voice's)")
    p.add_argument("--conditioning", action="store_true",
                   help="measure the WaveNet's conditioning instead, numpy against torch")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.conditioning:
        from threadpoolctl import threadpool_limits

        from tts.voice import BUNDLED_VOICE

        with threadpool_limits(1, user_api="blas"):
            rows = conditioning_table(args.voice or BUNDLED_VOICE)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        print(f"{'library':8s} {'part':34s} {'ms per second of audio':>23s}")
        for r in rows:
            print(f"{r['library']:8s} {r['part']:34s} {r['ms_per_audio_s']:23.1f}")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        voice = args.voice or bench_voice(Path(tmp) / "voice")
        records = []
        runs = [(backend, weights) for backend in args.backends or available_backends()
                for weights in args.weights if weights in (AUTO, *BACKEND_WEIGHTS.get(backend, ("fp32",)))]
        for backend, weights in runs:
            synth = Synthesizer.load(voice, device="cuda" if backend == "cuda" else "cpu", vocoder=backend,
                                     weights=weights)
            synth.synthesize("Warm up.")  # compile / load kernels outside the measurement
            weights = synth.vocoder.choice.weights  # what "auto" came to
            texts = [("sentence", SENTENCE)]
            if backend in args.paragraph_backends:
                texts.append(("paragraph", paragraph(300)))
            for name, text in texts:
                records.append({"backend": backend, "weights": weights, "text": name, **measure(synth, text)})
            print(f"measured {backend} {weights}", file=sys.stderr)
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"{'backend':8s} {'weights':7s} {'text':10s} {'words':>5s} {'audio s':>8s} {'synth s':>8s} {'RTF':>6s} {'first audio ms':>15s}")
    for r in records:
        print(f"{r['backend']:8s} {r['weights']:7s} {r['text']:10s} {r['words']:5d} {r['audio_s']:8.2f} {r['synthesis_s']:8.2f} "
              f"{r['realtime_factor']:6.3f} {r['first_audio_ms']:15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

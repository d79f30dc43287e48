"""Training throughput of the acoustic models and the vocoder, with 1 and N processes.

    python -m tts.train.bench [--runs 1x2 1x1 2x1] [--steps 8] [--warmup 3] [--clips 48] [--seconds 2.0]
    python -m tts.train.bench --report RUN_DIR      a run's throughput from its log, and its FLOP/s

Builds a synthetic corpus in the LJ Speech layout (tones and noise with texts whose length
matches the audio, ``--seconds`` per clip on average), then trains each task with its default
model config for ``--steps`` steps through the real command line (``python -m tts.train`` or
``torchrun``), and reads the step times from the run's log.jsonl. The first ``--warmup``
steps (allocator and thread-pool warm-up) are left out. A run ``PxT`` is P processes of T
threads each (OMP_NUM_THREADS); data are read in the training process (num_workers=0), so
that loader processes do not compete with the timed ones for the cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import tts

# The folder that holds the tts package (a source checkout's root, or site-packages): what the
# measuring subprocesses import the engine from.
REPO = Path(tts.__file__).resolve().parents[1]
# Syllable-like words: about 12 symbols per second of audio, as in read speech.
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "far", "away", "from", "home"]
BATCH = {"parallel": 16, "attention": 16, "vocoder": 8}  # the tasks' default global batch sizes


def make_corpus(root: Path, clips: int, seconds: float, seed: int = 0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    sr, lines = 16000, []
    for i in range(clips):
        dur = float(np.clip(rng.normal(seconds, 0.3 * seconds), 0.3 * seconds, 2.0 * seconds))
        t = np.arange(int(dur * sr)) / sr
        f0 = 100 + 60 * rng.random()
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        x = 0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(len(t))
        sf.write(root / "wavs" / f"LJ{i:04d}.wav", x.astype(np.float32), sr)
        text = " ".join(rng.choice(WORDS, size=max(1, int(dur * 3.5)))).capitalize() + "."
        lines.append(f"LJ{i:04d}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# Ways to run the same training step: the trainer's settings for each.
VARIANTS = {"fp32": ["cpu_format=fp32"], "bf16": ["cpu_format=bf16", "bf16=true"],
            "compile": ["cpu_format=fp32", "compile=true"],
            "bf16+compile": ["cpu_format=bf16", "bf16=true", "compile=true"],
            # The vocoder's training forward as the network's definition reads (conv1d,
            # channel-major): the baseline its time-major forward is measured against.
            "reference-fp32": ["cpu_format=fp32", "forward=reference"],
            "reference-bf16": ["cpu_format=bf16", "bf16=true", "forward=reference"]}
ONLY = {"reference-fp32": {"vocoder"}, "reference-bf16": {"vocoder"}}


def vocoder_training_flops_per_sample(c=None) -> int:
    """FLOPs of one training sample of a WaveNet (default: the default config): the forward
    (the kernels' count per sample, plus every layer's conditioning projection, the 3-tap
    upsampling phases and the frame convolution's share) and a backward of twice that."""
    from tts.kernels.bench import flops_per_sample
    from tts.vocoder.wavenet import WaveNetConfig

    c = WaveNetConfig() if c is None else c
    forward = (flops_per_sample(c) + 2 * c.n_layers * 2 * c.residual_channels * c.cond_channels
               + 2 * 3 * c.cond_channels * len(c.upsample_scales)
               + 2 * 3 * c.n_mels * c.cond_channels / c.hop_length)
    return int(3 * forward)


def cpu_peaks() -> tuple[str, dict[str, float], dict[str, float]]:
    """(the CPU in words, one core's nominal FLOP/s per format from its flags and clock,
    the same measured: a 1024^3 matrix product in torch, one thread)."""
    import torch

    from tts.kernels.bench import _fast_time
    from tts.train.precision import FLAGS, clock_hz, cpu_name_and_flags, nominal_peak

    name, flags = cpu_name_and_flags()
    clock = clock_hz()
    torch.set_num_threads(1)
    measured = {}
    for fmt, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.rand(1024, 1024, dtype=dtype), torch.rand(1024, 1024, dtype=dtype)
        measured[fmt] = 2 * 1024 ** 3 / _fast_time(lambda: torch.mm(a, b), 10)
    words = f"{name}, {os.cpu_count()} cores at {clock / 1e9:.2f} GHz, flags {' '.join(f for f in FLAGS if f in flags)}"
    return words, nominal_peak(flags, clock), measured


def run(task: str, procs: int, threads: int, data: Path, out: Path, steps: int, variant: str = "fp32") -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    sets = [f"max_steps={steps}", f"batch_size={BATCH[task]}", "eval_every=0", f"checkpoint_every={steps}",
            "num_workers=0", "eval_clips=2", *VARIANTS[variant]]
    launcher = [sys.executable, "-m", "tts.train"] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m", "tts.train"]
    cmd = [*launcher, task, "--data", str(data), "--out", str(out), "--set", *sets]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def gpu_bf16_peak() -> float:
    """The GPU's bf16 matrix-product FLOP/s as measured: an 8192^3 product, the mean of ten
    after three warm-ups (CUDA events)."""
    import torch

    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 10 * 2 * n ** 3 / (start.elapsed_time(end) / 1000)


def report(run_dir: Path, warmup: int = 3) -> str:
    """A run's throughput from its log.jsonl: steps, what it trained on, its rate after the
    first ``warmup`` steps, and for a vocoder run the model's FLOP/s against the measured peak
    of the devices it ran on (each process's GPU, its bf16 matrix product; else each process's
    CPU core, its matrix product in the format the steps ran in)."""
    import torch

    config = json.loads((run_dir / "config.json").read_text())
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    if not log:
        return f"{run_dir}: no steps logged"
    timed = log[min(warmup, len(log) - 1):]
    units, seconds = sum(r["units"] for r in timed), sum(r["seconds"] for r in timed)
    unit = "samples" if config["task"] == "vocoder" else "frames"
    lines = [f"{config['task']}: {log[-1]['step']} steps ({len(log)} in this log), {sum(r['units'] for r in log):,} "
             f"{unit} seen, {sum(r['seconds'] for r in log) / 60:.1f} min of steps",
             f"rate after {len(log) - len(timed)} warm-up steps: {seconds / len(timed):.3f} s/step, "
             f"{units / seconds:,.0f} {unit}/s"]
    if config["task"] == "vocoder":
        from tts.vocoder.wavenet import WaveNetConfig

        flops = vocoder_training_flops_per_sample(WaveNetConfig.from_dict(config["model"])) * units / seconds
        # Every process's device at the format its steps ran in (logs before these fields: one, fp32).
        processes, fmt = timed[-1].get("processes", 1), timed[-1].get("format", "fp32")
        if torch.cuda.is_available():
            peak, where = gpu_bf16_peak(), f"{torch.cuda.get_device_name()} bf16, measured"
        else:
            _, _, measured = cpu_peaks()
            peak, where = measured[fmt], f"one CPU core {fmt}, measured"
        peak *= processes
        where = where if processes == 1 else f"{processes} x {where}"
        scale, prefix = (1e12, "T") if peak >= 1e12 else (1e9, "G")
        lines.append(f"model {flops / scale:.3g} {prefix}FLOP/s = {flops / peak:.2%} of {peak / scale:.4g} "
                     f"{prefix}FLOP/s ({where})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--report"]:
        if len(argv) != 2:
            print("usage: python -m tts.train.bench --report RUN_DIR", file=sys.stderr)
            return 2
        print(report(Path(argv[1])))
        return 0
    p = argparse.ArgumentParser(prog="python -m tts.train.bench", description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    p.add_argument("--runs", nargs="+", default=[f"1x{cores}", "1x1", f"2x{max(1, cores // 2)}"],
                   help="PROCESSESxTHREADS per run")
    p.add_argument("--tasks", nargs="+", default=["parallel", "vocoder"], choices=list(BATCH))
    p.add_argument("--variants", nargs="+", default=["fp32"], choices=list(VARIANTS),
                   help="numeric formats and compilation to compare (bf16 autocast, torch.compile)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--seconds", type=float, default=2.0, help="mean clip duration")
    args = p.parse_args(argv)
    if args.steps <= args.warmup:
        p.error("--steps must exceed --warmup")
    try:
        runs = [tuple(int(n) for n in r.split("x")) for r in args.runs]
    except ValueError:
        p.error("--runs takes PROCESSESxTHREADS, e.g. 2x1")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine, nominal, measured = cpu_peaks()
    print(f"# {machine}; load average {load:.2f} at start; {args.clips} synthetic clips of "
          f"~{args.seconds:g} s; default model configs; steps {args.warmup + 1}-{args.steps} timed")
    print("# one core's peak, nominal (flags x clock) / measured (1024^3 matrix product): "
          + ", ".join(f"{f} {nominal[f] / 1e9:.0f} / {measured[f] / 1e9:.0f} GFLOP/s" for f in nominal))
    flops = vocoder_training_flops_per_sample()
    print(f"# vocoder training: {flops / 1e6:.2f} MFLOP per sample (forward and backward)")
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        data = make_corpus(Path(tmp) / "corpus", args.clips, args.seconds)
        from tts.train.data import FeatureCache

        FeatureCache(data).build(workers=os.cpu_count() or 1, progress=False)
        print("| task | variant | processes x threads | global batch | step (s) | items/s | throughput "
              "| GFLOP/s per core | of nominal peak | of measured peak |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for task, variant, (procs, threads) in itertools.product(args.tasks, args.variants, runs):
            if task not in ONLY.get(variant, {task}):
                continue
            out = Path(tmp) / f"{task}-{variant}-{procs}x{threads}"
            log = run(task, procs, threads, data, out, args.steps, variant)[args.warmup:]
            seconds = sum(r["seconds"] for r in log)
            items = sum(r["items"] for r in log)
            units = sum(r["units"] for r in log)
            unit = "samples" if task == "vocoder" else "frames"
            light = "| - | - | - |"
            if task == "vocoder":
                fmt = "bf16" if "bf16" in variant else "fp32"
                per_core = flops * units / seconds / (procs * threads)
                light = (f"| {per_core / 1e9:.1f} | {per_core / nominal[fmt]:.0%} | "
                         f"{per_core / measured[fmt]:.0%} |")
            print(f"| {task} | {variant} | {procs} x {threads} | {BATCH[task]} | {seconds / len(log):.3f} | "
                  f"{items / seconds:.1f} | {units / seconds:,.0f} {unit}/s {light}", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# load average {load:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

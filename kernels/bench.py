"""WaveNet inference speed of each vocoder backend against this machine's speed of light.

    python -m kernels.bench [--seconds 1.0] [--backends torch numba cuda]
                            [--configs default medium] [--repeats 3] [--chunk-seconds 0.1]
                            [--json] [--skip-startup]

For each config (the default voice's `WaveNetConfig()` and `WaveNetConfig.medium()`, random
weights as initialized, random conditioning of the spread real conditioning has) and each
backend present, one table row per figure:

- samples/s: one utterance of `--seconds` of audio on one thread (numba.set_num_threads(1),
  torch.set_num_threads(1)), generated `--repeats` times in calls of `--chunk-seconds` of
  audio (at least 10 calls per run), carrying the state from call to call as a streaming
  synthesizer does; the rate of a fast call (the 10th percentile of the call times). The
  torch reference runs `--torch-seconds` of audio: its speed does not depend on the length.
  "whole run s/s" is the rate over all calls. On a machine shared with other work the whole
  run also counts the time the thread waited for a core; a fast call is one that did not
  wait (the speed-of-light probes are timed the same way).
- x real time: samples/s / 16000, how many times faster than playback one utterance is
  made (2-utterance rows: aggregate samples/s / 16000, the real-time streams served).
- vs torch: samples/s over the torch reference's, both one utterance on one thread.
- FLOPs/sample: 2 x the multiply-adds, L*(8R^2 + 2R^2 + 2RS) + 2SA + 2*256*A (bias adds,
  activations and sampling not counted).
- of light: samples/s over the speed of light, measured in the same run with one thread.
  Peak FLOP/s (a 1024^3 float32 matrix product in torch, 20 timings) gives a ceiling of
  peak / FLOPs-per-sample; the rate at which an array the size of the weights streams from
  cache (a vectorized sum over it, faster of numba and torch, 50 timings of ~2 ms) gives
  bandwidth / weight-bytes-per-sample. The lower ceiling is the speed of light; the
  2-utterance rows are held against twice the one-core ceiling.
- 2 utterances: a batch of 2 on 2 threads, one utterance per thread.

Startup (numba, table output only): the first call's compile time in a fresh process with an
empty cache, and the load-from-cache time of a second process, for one utterance and for a
batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from kernels import available_backends, load_backend
from vocoder.wavenet import WaveNet, WaveNetConfig

SAMPLE_RATE = 16000
REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"default": WaveNetConfig, "medium": WaveNetConfig.medium}


# ---- model arithmetic ---------------------------------------------------------------------


def flops_per_sample(c: WaveNetConfig) -> int:
    L, R, S, A = c.n_layers, c.residual_channels, c.skip_channels, c.output_channels
    return L * (8 * R * R + 2 * R * R + 2 * R * S) + 2 * S * A + 2 * c.n_classes * A


def weight_bytes_per_sample(weights: dict[str, np.ndarray]) -> int:
    """Bytes of weights one sample reads: every matrix and bias once, one embedding row."""
    total = sum(a.nbytes for name, a in weights.items() if name not in ("embedding", "dilations"))
    return total + weights["embedding"][0].nbytes


# ---- speed of light ---------------------------------------------------------------------


def _fast(times: list[float]) -> float:
    """The 10th percentile of a list of timings: on a machine shared with other work, a
    timing undisturbed by it, yet not the single fastest, which is where a glitch of the
    virtual machine's clock lands."""
    return float(np.percentile(times, 10))


def _fast_time(fn, repeats: int) -> float:
    """`_fast` of `repeats` wall-clock timings of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return _fast(times)


def peak_flops(size: int = 1024, repeats: int = 20) -> float:
    """Single-thread float32 FLOP/s of a large matrix product (torch's BLAS), `_fast` of
    `repeats` timings."""
    torch.set_num_threads(1)
    a = torch.rand(size, size)
    b = torch.rand(size, size)
    torch.mm(a, b)
    return 2 * size ** 3 / _fast_time(lambda: torch.mm(a, b), repeats)


def stream_bandwidth(nbytes: int, repeats: int = 50) -> float:
    """Single-thread bytes/s at which an array of nbytes streams from wherever it fits in
    cache: the faster of a numba and a torch vectorized sum over it, each `_fast` of
    `repeats` timings of about 2 ms."""
    import numba

    @numba.njit(fastmath=True)
    def repeated_sum(a, reps):
        s = np.float32(0.0)
        for _ in range(reps):
            for i in range(a.size):
                s += a[i]
        return s

    a = np.random.default_rng(0).random(max(nbytes // 4, 1024), dtype=np.float32)
    reps = max(1, int(0.002 * 50e9 / a.nbytes))  # about 2 ms at 50 GB/s
    repeated_sum(a, 1)
    torch.set_num_threads(1)
    t = torch.from_numpy(a)
    t.sum()
    fastest = min(_fast_time(lambda: repeated_sum(a, reps), repeats),
                  _fast_time(lambda: [t.sum() for _ in range(reps)], repeats))
    return a.nbytes * reps / fastest


# ---- timing the backends -----------------------------------------------------------------


def random_inputs(config: WaveNetConfig, batch: int, samples: int, seed: int = 0):
    """Conditioning with the spread real conditioning has at initialization, and uniforms."""
    rng = np.random.default_rng(seed)
    shape = (batch, samples, config.n_layers, 2 * config.residual_channels)
    cond = (0.5 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    return cond, rng.random((batch, samples), dtype=np.float32)


def time_backend(kernel, config: WaveNetConfig, batch: int, samples: int, repeats: int,
                 chunk: int) -> tuple[float, float, int]:
    """Generate `samples` per utterance in calls of `chunk` samples, carrying the state,
    `repeats` times, after a warm-up call that compiles. Returns (samples/s of a `_fast`
    call, samples/s over all calls, distinct classes drawn), counting every utterance."""
    chunk = min(chunk, samples)
    cond, u = random_inputs(config, batch, samples)
    kernel.generate(cond[:, :8], u[:, :8], kernel.init_state(batch))
    times, total, classes = [], 0.0, []
    for _ in range(repeats):
        state = kernel.init_state(batch)
        for start in range(0, samples - chunk + 1, chunk):
            t0 = time.perf_counter()
            out, state = kernel.generate(cond[:, start:start + chunk], u[:, start:start + chunk], state)
            times.append(time.perf_counter() - t0)
            classes.append(np.asarray(out))
    total = batch * chunk * len(times)
    return (batch * chunk / _fast(times), total / sum(times),
            len(np.unique(np.concatenate(classes, axis=1))))


def startup_times() -> dict[str, float]:
    """numba compile time in a fresh process with an empty cache, and the cache-load time of
    a second process: for one utterance (serial kernel) and a batch (parallel kernel)."""
    script = textwrap.dedent("""
        import json, time
        import numpy as np
        from kernels.cpu import NumbaKernel
        from vocoder.wavenet import WaveNet, WaveNetConfig
        kernel = NumbaKernel(WaveNet(WaveNetConfig()).export_weights())
        out = {}
        for batch, key in ((1, "one utterance"), (2, "batch")):
            cond = np.zeros((batch, 4, 12, 64), np.float32)
            u = np.full((batch, 4), 0.5, np.float32)
            start = time.perf_counter()
            kernel.generate(cond, u, kernel.init_state(batch))
            out[key] = time.perf_counter() - start
        print(json.dumps(out))
    """)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        runs = []
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO,
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {f"compile, {k}": v for k, v in runs[0].items()} | {f"load from cache, {k}": v
                                                             for k, v in runs[1].items()}


# ---- the report ---------------------------------------------------------------------------


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    return (f"{name}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"numba {numba.__version__}, torch {torch.__version__}")


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=1.0, help="seconds of audio per measurement")
    p.add_argument("--torch-seconds", type=float, default=0.05, help="seconds of audio for the torch reference")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure")
    p.add_argument("--chunk-seconds", type=float, default=0.1, help="audio per timed generate call")
    p.add_argument("--backends", nargs="+", default=["torch", "numba", "cuda"], choices=["torch", "numba", "cuda"])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--json", action="store_true", help="print the figures as a JSON list of records")
    p.add_argument("--skip-startup", action="store_true", help="do not measure numba compile and cache-load times")
    args = p.parse_args(argv)
    if min(args.seconds, args.torch_seconds, args.chunk_seconds) <= 0 or args.repeats < 1:
        p.error("--seconds, --torch-seconds and --chunk-seconds must be > 0, --repeats >= 1")

    import numba

    torch.set_num_threads(1)
    usable = available_backends()
    backends = [b for b in args.backends if b in usable]
    skipped = [b for b in args.backends if b not in usable]
    load_before = load()
    peak = peak_flops()
    records, notes = [], []
    for config_name in args.configs:
        config = CONFIGS[config_name]()
        torch.manual_seed(0)
        model = WaveNet(config).eval()
        weights = model.export_weights()
        flops = flops_per_sample(config)
        nbytes = weight_bytes_per_sample(weights)
        bandwidth = stream_bandwidth(nbytes)
        light = min(peak / flops, bandwidth / nbytes)
        notes.append(f"{config_name}: {flops / 1e6:.3f} MFLOP and {nbytes / 1e6:.3f} MB of weights per "
                     f"sample; peak {peak / 1e9:.1f} GFLOP/s -> {peak / flops:,.0f} samples/s, stream "
                     f"{bandwidth / 1e9:.1f} GB/s -> {bandwidth / nbytes:,.0f} samples/s; speed of light "
                     f"{light:,.0f} samples/s")
        torch_rate = None
        for backend in backends:
            kernel = load_backend(backend, model if backend == "torch" else weights)
            seconds = args.torch_seconds if backend == "torch" else args.seconds
            samples = max(16, int(seconds * SAMPLE_RATE))
            runs = [(1, 1)] + ([(2, 2)] if backend != "torch" else [])
            for batch, threads in runs:
                torch.set_num_threads(1)
                if backend == "numba":
                    if threads > numba.config.NUMBA_NUM_THREADS:
                        notes.append(f"numba {config_name}: {batch} utterances skipped, "
                                     f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}")
                        continue
                    numba.set_num_threads(threads)
                # At least 10 calls per run, so that some escape the other work on the machine.
                chunk = max(1, min(int(args.chunk_seconds * SAMPLE_RATE), samples // 10))
                rate, whole, distinct = time_backend(kernel, config, batch, samples, args.repeats, chunk)
                if backend == "torch":
                    torch_rate = rate
                on_cpu = backend != "cuda"
                records.append({
                    "backend": backend,
                    "config": config_name,
                    "utterances": batch,
                    "threads": threads if on_cpu else None,
                    "samples_per_s": rate,
                    "realtime_factor": rate / SAMPLE_RATE,
                    "speedup_vs_torch": None if torch_rate is None or batch > 1 else rate / torch_rate,
                    "flops_per_sample": flops,
                    "fraction_of_speed_of_light": rate / (threads * light) if on_cpu else None,
                    "whole_run_samples_per_s": whole,
                    "distinct_classes": distinct,
                })
    if backends and "numba" in backends:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    # Startup is no per-backend-and-config record, so the JSON output leaves it out.
    measure_startup = not (args.skip_startup or args.json) and "numba" in backends
    startup = startup_times() if measure_startup else {}

    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min): {load_before} before, {load()} after")
    if skipped:
        print(f"not available here: {', '.join(skipped)}")
    header = ("backend", "config", "utt", "samples/s", "x real time", "vs torch", "FLOPs/sample",
              "of light", "whole run s/s")
    columns = (("samples_per_s", ",.0f"), ("realtime_factor", ".2f"), ("speedup_vs_torch", ".0f"),
               ("flops_per_sample", ","), ("fraction_of_speed_of_light", ".0%"),
               ("whole_run_samples_per_s", ",.0f"))
    rows = [header]
    for r in records:
        rows.append((r["backend"], r["config"], str(r["utterances"]),
                     *("-" if r[key] is None else format(r[key], spec) for key, spec in columns)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(cell.rjust(w) if j >= 2 else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("\nspeed of light (one core):")
    for note in notes:
        print(f"  {note}")
    if startup:
        print("\nnumba startup (first call of a fresh process):")
        for key, value in startup.items():
            print(f"  {key}: {value:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

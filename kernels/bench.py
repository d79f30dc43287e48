"""WaveNet inference speed of each vocoder backend against this machine's speed of light.

    python -m tts.kernels.bench [--seconds 1.0] [--backends torch numba cuda]
                                [--configs default medium] [--repeats 3] [--chunk-seconds 0.1]
                                [--cuda-chunk 3200] [--cuda-batches 100 128 256]
                                [--cuda-topologies fused split] [--device-arrays auto]
                                [--weights fp32 [bf16]] [--quality-steps 4000]
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
- `--weights fp32 bf16`: the numba rows once per weight format (`NumbaKernel(...,
  weight_format=...)`; fp32, the default, alone gives the rows above). A bf16 row is held
  against its own speed of light: its weight bytes (matrices at 2 bytes, biases and the
  embedding row at 4) over the bandwidth measured for an array of that size. Its record
  carries "weights": "bf16" and the cost in quality against the fp32 kernel, same weights,
  conditioning and uniforms over `--quality-steps` samples (a table of its own):
  - logit error: the largest |bf16 logit - fp32 logit|, both teacher-forced with the
    classes the fp32 kernel drew (so both see the same history), next to the fp32 logits'
    standard deviation for scale;
  - same class per step: how often bf16 logits, sampled with the step's uniform, draw the
    class the fp32 kernel drew from that same history;
  - free-running: both generate on their own from the same uniforms; the fraction of
    samples with identical classes and the first step where they differ (after it, the two
    histories differ and the samples decorrelate);
  - SNR: the free-running bf16 audio against the fp32 audio after mu-law decoding,
    10 log10(sum fp32^2 / sum (bf16 - fp32)^2) dB.

Startup (numba, table output only): the first call's compile time in a fresh process with an
empty cache, and the load-from-cache time of a second process, for one utterance and for a
batch.

CUDA (where a GPU is usable; a table of its own, headed by the GPU and the date):
- rows: one utterance with each of `--cuda-topologies` (labelled with the plan's
  `describe()`), then `--cuda-batches` utterances with the plan the kernel chooses.
- inputs live on the GPU (`--device-arrays auto`: torch CUDA tensors where torch has CUDA,
  else numba device arrays; `numpy` times the host copies too): at medium the conditioning
  is 10 KB per sample, so copying it in each call would be what is measured. One chunk of
  random conditioning (the kernel's work does not depend on its values) is reused by every
  call, and its B*T*L*2R*4 bytes are kept within half of the free GPU memory.
- each plan first runs one untimed call of a few dozen samples, which compiles it (seconds);
  then `--seconds` of audio per utterance in calls of `--cuda-chunk` samples (2000-4000:
  long enough that the launch and the state's trip to the host at each call are small),
  `--repeats` times, each call timed by the wall clock between two synchronizations.
- samples/s counts every utterance (the rate of a fast call, as above); us/sample is the
  time of one step of the batch; real-time streams = utterances x the whole run's rate per
  utterance / 16000, and whether every stream keeps up with real time (rate per utterance
  >= 16000).
- of light: samples/s over min(FP32 peak / FLOPs per sample, on-chip bandwidth / weight
  bytes per sample), both from the device's attributes: SMs x FP32 lanes x 2 x clock, and
  SMs x 128 bytes per clock (what shared memory and L1 deliver; every weight a sample uses
  passes through one of them). Each sample is a chain of dependent matrix-vector products
  through every layer and the output layers, so one utterance is bound by that chain's
  latency, far below either ceiling; "of estimate" holds one utterance against the
  per-sample latency kernels/cuda.py's design estimates for an H200 (100%: as fast as
  estimated).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import tts
from tts.kernels import BACKENDS, WEIGHT_FORMATS, available_backends, backend_status, load_backend
from tts.kernels.hardware import clock_hz, cpu_name_and_flags, nominal_peak
from tts.vocoder.choice import BACKEND_WEIGHTS
from tts.vocoder.wavenet import WaveNet, WaveNetConfig

SAMPLE_RATE = 16000
# The folder that holds the tts package (a source checkout's root, or site-packages): what the
# measuring subprocesses import the engine from.
REPO = Path(tts.__file__).resolve().parents[1]
CONFIGS = {"default": WaveNetConfig, "medium": WaveNetConfig.medium,
           # The default voice's size with LPCNet's inputs: the predictor runs in the loop.
           "default-lpc": lambda: WaveNetConfig(lpc_order=16, lpc_inputs=True)}


# ---- model arithmetic ---------------------------------------------------------------------


def flops_per_sample(c: WaveNetConfig) -> int:
    L, R, S, A = c.n_layers, c.residual_channels, c.skip_channels, c.output_channels
    return L * (8 * R * R + 2 * R * R + 2 * R * S) + 2 * S * A + 2 * c.n_classes * A


def weight_bytes_per_sample(weights: dict[str, np.ndarray], weight_format: str = "fp32") -> int:
    """Bytes of weights one sample reads: every matrix and bias once, one embedding row;
    in bf16 the matrices at 2 bytes a weight."""
    matrix_scale = 0.5 if weight_format == "bf16" else 1.0
    total = sum(a.nbytes * (matrix_scale if name.endswith("_w") else 1.0)
                for name, a in weights.items() if name not in ("embedding", "dilations"))
    return int(total) + weights["embedding"][0].nbytes


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


def mild_lpc(config: WaveNetConfig, batch: int, samples: int) -> np.ndarray | None:
    """With LPCNet's inputs, a mild predictor (B, T, order), the same for every sample (its
    values do not change the work); None without."""
    order = config.lpc_order if config.lpc_inputs else 0
    return np.full((batch, samples, order), 0.5 / max(order, 1), np.float32) if order else None


def time_backend(kernel, config: WaveNetConfig, batch: int, samples: int, repeats: int,
                 chunk: int) -> tuple[float, float, int]:
    """Generate `samples` per utterance in calls of `chunk` samples, carrying the state,
    `repeats` times, after a warm-up call that compiles. Returns (samples/s of a `_fast`
    call, samples/s over all calls, distinct classes drawn), counting every utterance."""
    chunk = min(chunk, samples)
    cond, u = random_inputs(config, batch, samples)
    lpc = mild_lpc(config, batch, samples)
    part = (lambda a, b: None) if lpc is None else (lambda a, b: lpc[:, a:b])
    kernel.generate(cond[:, :8], u[:, :8], kernel.init_state(batch), lpc=part(0, 8))
    times, total, classes = [], 0.0, []
    for _ in range(repeats):
        state = kernel.init_state(batch)
        for start in range(0, samples - chunk + 1, chunk):
            t0 = time.perf_counter()
            out, state = kernel.generate(cond[:, start:start + chunk], u[:, start:start + chunk], state,
                                         lpc=part(start, start + chunk))
            times.append(time.perf_counter() - t0)
            classes.append(np.asarray(out))
    total = batch * chunk * len(times)
    return (batch * chunk / _fast(times), total / sum(times),
            len(np.unique(np.concatenate(classes, axis=1))))


def weight_quality(weights: dict[str, np.ndarray], config: WaveNetConfig, steps: int) -> dict:
    """What bf16 weights cost against fp32 ones in the numba kernel, one utterance of `steps`
    samples with the same conditioning and uniforms (see the module docstring)."""
    from tts.kernels.cpu import NumbaKernel
    from tts.audio import mu_law_decode
    from tts.vocoder.wavenet import sample_classes

    cond, u = random_inputs(config, 1, steps, seed=1)
    fp32 = NumbaKernel(weights, parallel=False)
    bf16 = NumbaKernel(weights, parallel=False, weight_format="bf16")
    classes, _ = fp32.generate(cond, u, fp32.init_state(1))
    _, _, logits = fp32.generate(cond, None, fp32.init_state(1), teacher=classes, return_logits=True)
    _, _, bf16_logits = bf16.generate(cond, None, bf16.init_state(1), teacher=classes, return_logits=True)
    per_step = sample_classes(torch.from_numpy(bf16_logits), torch.from_numpy(u)).numpy()
    bf16_classes, _ = bf16.generate(cond, u, bf16.init_state(1))
    differ = np.flatnonzero(bf16_classes[0] != classes[0])
    audio, bf16_audio = mu_law_decode(classes[0]).astype(np.float64), mu_law_decode(bf16_classes[0])
    noise = np.sum((bf16_audio - audio) ** 2)
    return {
        "quality_steps": steps,
        "logit_max_abs_error_vs_fp32": float(np.abs(bf16_logits - logits).max()),
        "fp32_logit_std": float(logits.std()),
        "same_class_per_step": float(np.mean(per_step == classes)),
        "free_running_same_class": float(np.mean(bf16_classes == classes)),
        "free_running_first_difference": int(differ[0]) if differ.size else None,
        "audio_snr_db": float(10 * np.log10(np.sum(audio ** 2) / noise)) if noise > 0 else math.inf,
    }


def startup_times() -> dict[str, float]:
    """numba compile time in a fresh process with an empty cache, and the cache-load time of
    a second process: for one utterance (serial kernel) and a batch (parallel kernel)."""
    script = textwrap.dedent("""
        import json, time
        import numpy as np
        from tts.kernels.cpu import NumbaKernel
        from tts.vocoder.wavenet import WaveNet, WaveNetConfig
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


# ---- the CUDA kernel -----------------------------------------------------------------------

SHARED_BYTES_PER_CLOCK = 128  # per SM: 32 banks x 4 bytes, what shared memory (and L1) deliver
H200_CLOCK_HZ = 1.98e9  # boost clock; the simulator has no device to ask
WARMUP_SAMPLES = 32
DEVICE_ARRAYS = ("auto", "torch", "numba", "numpy")
# Per-sample latency of one utterance that kernels/cuda.py's design estimates for an H200,
# by (config, topology): the yardstick for rows that the chain's latency bounds.
LATENCY_ESTIMATE_US = {("default", "fused"): 7.0, ("default", "split"): 5.5,
                       ("medium", "split"): 11.8}


def fp32_lanes_per_sm(compute_capability: tuple[int, int]) -> int:
    """FP32 units per SM: 64 up to sm_80 (V100, T4, A100), 128 from sm_86 on (GA10x, Ada,
    Hopper, Blackwell)."""
    return 64 if tuple(compute_capability) < (8, 6) else 128


@dataclass(frozen=True)
class GpuInfo:
    """The device attributes the CUDA ceilings are computed from."""

    name: str
    compute_capability: tuple[int, int]
    sm_count: int
    clock_hz: float
    memory_bytes: float  # total; inf where unknown (the simulator)
    assumed: str = ""  # the figures taken from an H200 instead of the device, if any

    @classmethod
    def current(cls) -> GpuInfo:
        """The current numba.cuda device; in the simulator an H200's figures."""
        import numba
        from numba import cuda

        from tts.kernels.cuda import H200

        if numba.config.ENABLE_CUDASIM:
            return cls("CUDA simulator", (9, 0), H200["sm_count"], H200_CLOCK_HZ, math.inf,
                       assumed="compute capability, SM count and clock")
        from numba.cuda.cudadrv.error import CudaDriverError

        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        try:
            clock, assumed = device.CLOCK_RATE * 1e3, ""  # the attribute is in kHz
        except (AttributeError, CudaDriverError):  # an attribute a newer driver may drop
            clock, assumed = H200_CLOCK_HZ, "clock"
        total = cuda.current_context().get_memory_info()[1]
        return cls(name, tuple(device.compute_capability), int(device.MULTIPROCESSOR_COUNT),
                   float(clock), float(total), assumed)

    @property
    def peak_flops(self) -> float:
        """FP32 FLOP/s without tensor cores: every lane one fused multiply-add per clock."""
        return self.sm_count * fp32_lanes_per_sm(self.compute_capability) * 2 * self.clock_hz

    @property
    def onchip_bandwidth(self) -> float:
        """Bytes/s that the shared memory (or L1) of all SMs delivers together."""
        return self.sm_count * SHARED_BYTES_PER_CLOCK * self.clock_hz

    def describe(self) -> str:
        major, minor = self.compute_capability
        memory = f", {self.memory_bytes / 2**30:.0f} GiB" if math.isfinite(self.memory_bytes) else ""
        text = (f"{self.name} (compute capability {major}.{minor}, {self.sm_count} SMs at "
                f"{self.clock_hz / 1e9:.2f} GHz{memory})")
        return text + (f"; {self.assumed} assumed to be an H200's" if self.assumed else "")


def cuda_speed_of_light(gpu: GpuInfo, config_name: str, config: WaveNetConfig, flops: int,
                        nbytes: int) -> tuple[float, list[str]]:
    """(samples/s ceiling of the whole GPU, lines for the notes): min(FP32 peak / FLOPs per
    sample, on-chip bandwidth / weight bytes per sample), and the latency estimates that
    bound one utterance instead."""
    by_flops, by_bytes = gpu.peak_flops / flops, gpu.onchip_bandwidth / nbytes
    light = min(by_flops, by_bytes)
    lanes = fp32_lanes_per_sm(gpu.compute_capability)
    lines = [(f"{config_name}: {flops / 1e6:.3f} MFLOP and {nbytes / 1e6:.3f} MB of weights per "
              f"sample; FP32 peak {gpu.peak_flops / 1e12:.1f} TFLOP/s ({gpu.sm_count} SMs x {lanes} "
              f"lanes x 2 x {gpu.clock_hz / 1e9:.2f} GHz) -> {by_flops:,.0f} samples/s, on-chip "
              f"{gpu.onchip_bandwidth / 1e12:.1f} TB/s ({gpu.sm_count} SMs x {SHARED_BYTES_PER_CLOCK} "
              f"B/clock) -> {by_bytes:,.0f} samples/s; speed of light {light:,.0f} samples/s")]
    estimates = [f"{topology} {us:.1f} us ({1e6 / us:,.0f} samples/s)"
                 for (name, topology), us in LATENCY_ESTIMATE_US.items() if name == config_name]
    lines.append(f"{config_name}, one utterance: each sample is a chain of dependent "
                 f"matrix-vector products through {config.n_layers} layers and 2 output layers, "
                 f"so its latency, not either ceiling, bounds the rate" + (f"; design estimate per sample on an H200: {', '.join(estimates)}"
                                if estimates else ""))
    return light, lines


def resolve_device_arrays(mode: str) -> str:
    """`mode` made concrete: "auto" is torch CUDA tensors where torch can use the GPU (not in
    the simulator, which only numba's arrays reach), else numba device arrays. Raises
    ValueError for torch tensors without a CUDA build of torch."""
    import numba

    if mode not in DEVICE_ARRAYS:
        raise ValueError(f"device arrays must be one of {', '.join(DEVICE_ARRAYS)}, got {mode!r}")
    torch_cuda = torch.cuda.is_available() and not numba.config.ENABLE_CUDASIM
    if mode == "auto":
        return "torch" if torch_cuda else "numba"
    if mode == "torch" and not torch_cuda:
        raise ValueError("--device-arrays torch needs a CUDA build of torch that sees the GPU; "
                         "use numba (or auto)")
    return mode


def cuda_inputs(mode: str, config: WaveNetConfig, batch: int, samples: int, calls: int,
                seed: int = 0):
    """Conditioning (B, T, L, 2R): one utterance's random conditioning repeated (the kernel's
    work does not depend on its values); uniforms (calls, B, T), so that each call's (B, T)
    is contiguous, as the kernel requires. Host arrays for "numpy", else on the GPU."""
    rng = np.random.default_rng(seed)
    L, R = config.n_layers, config.residual_channels
    one = 0.5 * rng.standard_normal((samples, L, 2 * R), dtype=np.float32)  # (T, L, 2R)
    uniforms = rng.random((calls, batch, samples), dtype=np.float32)  # (calls, B, T)
    shape = (batch, samples, L, 2 * R)
    if mode == "numpy":
        return np.ascontiguousarray(np.broadcast_to(one, shape)), uniforms
    if mode == "torch":
        return (torch.from_numpy(one).to("cuda").expand(shape).contiguous(),
                torch.from_numpy(uniforms).to("cuda"))
    from numba import cuda

    cond = cuda.device_array(shape, np.float32)
    for b in range(batch):
        cond[b].copy_to_device(one)
    return cond, cuda.to_device(uniforms)


def chunk_within_memory(chunk: int, batch: int, config: WaveNetConfig, free_bytes: float) -> int:
    """The longest call, at most `chunk` samples, whose conditioning (B*T*L*2R float32s)
    takes at most half of `free_bytes` of GPU memory."""
    per_sample = batch * config.n_layers * 2 * config.residual_channels * 4
    if not math.isfinite(free_bytes):
        return chunk
    return max(1, min(chunk, int(free_bytes / 2 // per_sample)))


def _free_gpu_bytes() -> float:
    from numba import cuda

    return float(cuda.current_context().get_memory_info()[0])


def _synchronize(mode: str) -> None:
    """Wait for all work on the GPU, torch's stream included."""
    from numba import cuda

    if mode == "torch":
        torch.cuda.synchronize()
    cuda.synchronize()


def warm_up(kernel, config: WaveNetConfig, batch: int, mode: str,
            samples: int = WARMUP_SAMPLES) -> None:
    """One untimed call: compiles the batch's plan (seconds) and puts its weights on the GPU."""
    cond, uniforms = cuda_inputs(mode, config, batch, samples, 1)
    kernel.generate(cond, uniforms[0], kernel.init_state(batch), lpc=mild_lpc(config, batch, samples))


def time_cuda(kernel, config: WaveNetConfig, batch: int, samples: int, chunk: int, repeats: int,
              mode: str) -> tuple[list[float], int]:
    """Generate `samples` per utterance in calls of `chunk` samples, carrying the state,
    `repeats` times, each call timed by the wall clock between two synchronizations (after
    `warm_up`). Returns (seconds of each call, distinct classes drawn)."""
    calls = max(1, samples // chunk)
    cond, uniforms = cuda_inputs(mode, config, batch, chunk, calls)
    lpc = mild_lpc(config, batch, chunk)
    times, seen = [], np.zeros(256, bool)
    for _ in range(repeats):
        state = kernel.init_state(batch)
        for i in range(calls):
            _synchronize(mode)
            start = time.perf_counter()
            out, state = kernel.generate(cond, uniforms[i], state, lpc=lpc)
            _synchronize(mode)
            times.append(time.perf_counter() - start)
            seen |= np.bincount(np.asarray(out).ravel(), minlength=256)[:256] > 0
    return times, int(seen.sum())


def cuda_record(config_name: str, batch: int, topology: str, plan: str, times: list[float],
                chunk: int, flops: int, light: float, *, latency_estimate_us: float | None = None,
                torch_rate: float | None = None, distinct_classes: int | None = None,
                device: str = "", device_arrays: str = "") -> dict:
    """One CUDA row from the seconds of its calls of `chunk` samples per utterance.

    samples/s counts every utterance, at the rate of a fast call (as the CPU rows); the
    real-time streams are sustained over the whole run: utterances x per-utterance rate /
    16000, each stream keeping up if its own rate is >= 16000."""
    stream_rate = chunk / _fast(times)  # samples/s of one utterance
    stream_whole = chunk * len(times) / sum(times)
    rate = batch * stream_rate
    us = 1e6 / stream_rate  # one step of the whole batch
    return {
        "backend": "cuda",
        "config": config_name,
        "utterances": batch,
        "threads": None,
        "topology": topology,
        "plan": plan,
        "samples_per_s": rate,
        "realtime_factor": rate / SAMPLE_RATE,
        "speedup_vs_torch": None if torch_rate is None or batch > 1 else rate / torch_rate,
        "flops_per_sample": flops,
        "fraction_of_speed_of_light": rate / light,
        "speed_of_light_samples_per_s": light,
        "us_per_sample": us,
        "stream_samples_per_s": stream_rate,
        "realtime_streams": batch * stream_whole / SAMPLE_RATE,
        "every_stream_realtime": stream_whole >= SAMPLE_RATE,
        "latency_estimate_us": latency_estimate_us,
        "fraction_of_latency_estimate": None if latency_estimate_us is None else latency_estimate_us / us,
        "whole_run_samples_per_s": batch * stream_whole,
        "distinct_classes": distinct_classes,
        "chunk_samples": chunk,
        "device": device,
        "device_arrays": device_arrays,
    }


def cuda_records(model: WaveNet, config_name: str, gpu: GpuInfo, *, samples: int, chunk: int,
                 repeats: int, topologies=("fused", "split"), batches=(100, 128, 256),
                 device_arrays: str = "auto", threads: int = 256, warmup: int = WARMUP_SAMPLES,
                 torch_rate: float | None = None) -> tuple[list[dict], list[str]]:
    """The CUDA rows of one model: one utterance with each of `topologies`, then each of
    `batches` utterances with the plan the kernel chooses. Returns (records, notes); a row
    the kernel cannot run here (a split plan in the simulator, or more blocks than the GPU
    holds at once) becomes a note."""
    from tts.kernels.cuda import CudaKernel

    mode = resolve_device_arrays(device_arrays)
    config, weights = model.config, model.export_weights()
    flops, nbytes = flops_per_sample(config), weight_bytes_per_sample(weights)
    light, notes = cuda_speed_of_light(gpu, config_name, config, flops, nbytes)
    records, kernels = [], {}
    for batch, topology in [(1, t) for t in topologies] + [(b, "auto") for b in batches]:
        label = f"cuda {config_name}, {batch} utterance{'s' if batch > 1 else ''}, topology {topology}"
        if topology not in kernels:
            kernels[topology] = CudaKernel(weights, topology=topology, threads=threads)
        kernel = kernels[topology]
        try:
            warm_up(kernel, config, batch, mode, warmup)
        except (ValueError, RuntimeError) as e:
            notes.append(f"{label}: skipped ({e})")
            continue
        plan = kernel.plan(batch)  # after the call: a plan that could not launch is replaced
        fit = chunk_within_memory(min(chunk, samples), batch, config, _free_gpu_bytes())
        if fit < min(chunk, samples):
            notes.append(f"{label}: calls of {fit} samples, so that their conditioning fits the GPU")
        times, distinct = time_cuda(kernel, config, batch, samples, fit, repeats, mode)
        shape = "fused" if plan.fused else "split"
        records.append(cuda_record(
            config_name, batch, shape, plan.describe(), times, fit, flops, light,
            latency_estimate_us=LATENCY_ESTIMATE_US.get((config_name, shape)) if batch == 1 else None,
            torch_rate=torch_rate, distinct_classes=distinct, device=gpu.name, device_arrays=mode))
        if mode == "torch":
            torch.cuda.empty_cache()  # the next batch's conditioning may need the memory
    return records, notes


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


def _cell(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: int) -> list[str]:
    """Aligned text lines: the first `left` columns flush left, the figures flush right."""
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if j < left else cell.rjust(w)
                       for j, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def _backend_label(record: dict) -> str:
    return record["backend"] + (f" {record['weights']}" if "weights" in record else "")


def cpu_table(records: list[dict]) -> list[str]:
    header = ("backend", "config", "utt", "samples/s", "x real time", "vs torch", "FLOPs/sample",
              "of light", "whole run s/s")
    columns = (("samples_per_s", ",.0f"), ("realtime_factor", ".2f"), ("speedup_vs_torch", ".0f"),
               ("flops_per_sample", ","), ("fraction_of_speed_of_light", ".0%"),
               ("whole_run_samples_per_s", ",.0f"))
    rows = [(_backend_label(r), r["config"], str(r["utterances"]),
             *(_cell(r[key], spec) for key, spec in columns)) for r in records]
    return _table(header, rows, left=2)


def quality_table(records: list[dict]) -> list[str]:
    header = ("weights", "config", "steps", "logit max err", "fp32 logit std", "same class/step",
              "free-running same", "first difference", "audio SNR dB")
    columns = (("quality_steps", ""), ("logit_max_abs_error_vs_fp32", ".2e"), ("fp32_logit_std", ".3f"),
               ("same_class_per_step", ".2%"), ("free_running_same_class", ".2%"),
               ("free_running_first_difference", ""), ("audio_snr_db", ".1f"))
    rows = [(r["weights"], r["config"], *(_cell(r[key], spec) for key, spec in columns))
            for r in records if "quality_steps" in r]
    return _table(header, rows, left=2)


def cuda_table(records: list[dict]) -> list[str]:
    header = ("config", "plan", "utt", "samples/s", "us/sample", "real-time streams",
              "each >= real time", "vs torch", "of light", "of estimate", "whole run s/s")
    columns = (("samples_per_s", ",.0f"), ("us_per_sample", ".2f"), ("realtime_streams", ".1f"),
               ("every_stream_realtime", ""), ("speedup_vs_torch", ",.0f"),
               ("fraction_of_speed_of_light", ".2%"), ("fraction_of_latency_estimate", ".0%"),
               ("whole_run_samples_per_s", ",.0f"))
    rows = [(r["config"], r["plan"], str(r["utterances"]),
             *(_cell(r[key], spec) for key, spec in columns)) for r in records]
    return _table(header, rows, left=2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts.kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=1.0, help="seconds of audio per measurement")
    p.add_argument("--torch-seconds", type=float, default=0.05, help="seconds of audio for the torch reference")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure")
    p.add_argument("--chunk-seconds", type=float, default=0.1, help="audio per timed generate call (CPU)")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--cuda-chunk", type=int, default=3200,
                   help="samples per utterance per timed CUDA call (2000-4000 keeps the launch "
                        "and the state's trip to the host small)")
    p.add_argument("--cuda-batches", type=int, nargs="*", default=[100, 128, 256],
                   help="utterances per batch for the many-streams CUDA rows")
    p.add_argument("--cuda-topologies", nargs="*", default=["fused", "split"],
                   choices=["auto", "fused", "split"], help="CUDA plans to time with one utterance")
    p.add_argument("--device-arrays", default="auto", choices=DEVICE_ARRAYS,
                   help="where the CUDA rows' inputs live: torch CUDA tensors, numba device "
                        "arrays, or numpy host arrays copied in every call (auto: torch where "
                        "torch has CUDA, else numba)")
    p.add_argument("--weights", nargs="+", default=["fp32"], choices=WEIGHT_FORMATS,
                   help="weight formats of the numba kernel to time (bf16 also measures its "
                        "cost in quality against fp32)")
    p.add_argument("--quality-steps", type=int, default=4000,
                   help="samples per utterance for the bf16 quality figures")
    p.add_argument("--json", action="store_true", help="print the figures as a JSON list of records")
    p.add_argument("--skip-startup", action="store_true", help="do not measure numba compile and cache-load times")
    args = p.parse_args(argv)
    if min(args.seconds, args.torch_seconds, args.chunk_seconds) <= 0 or args.repeats < 1:
        p.error("--seconds, --torch-seconds and --chunk-seconds must be > 0, --repeats >= 1")
    if args.cuda_chunk < 1 or any(b < 1 for b in args.cuda_batches):
        p.error("--cuda-chunk and --cuda-batches must be >= 1")
    if args.quality_steps < 1:
        p.error("--quality-steps must be >= 1")

    import numba


    torch.set_num_threads(1)
    usable = available_backends()
    backends = [b for b in args.backends if b in usable]
    skipped = [f"{b} ({backend_status(b)[1]})" for b in args.backends if b not in usable]
    cpu_backends = [b for b in backends if b != "cuda"]
    if "cuda" in backends:
        try:
            device_arrays = resolve_device_arrays(args.device_arrays)
        except ValueError as e:
            p.error(str(e))
        gpu = GpuInfo.current()
    load_before = load()
    # The bound is the core's nominal peak (its flags and clock), or what a matrix product
    # measures where that is more: a measured peak alone can sit below what a kernel reaches.
    measured = peak_flops() if cpu_backends else None
    nominal = nominal_peak(cpu_name_and_flags()[1], clock_hz())["fp32"]
    peak = None if measured is None else max(measured, nominal if nominal == nominal else 0.0)
    records, notes, cuda_notes = [], [], []
    for config_name in args.configs:
        config = CONFIGS[config_name]()
        torch.manual_seed(0)
        model = WaveNet(config).eval()
        weights = model.export_weights()
        flops = flops_per_sample(config)

        def cpu_light(weight_format: str) -> float:
            """One core's speed of light for these weights, measured now, with a note."""
            nbytes = weight_bytes_per_sample(weights, weight_format)
            bandwidth = stream_bandwidth(nbytes)
            light = min(peak / flops, bandwidth / nbytes)
            notes.append(f"{config_name} {weight_format}: {flops / 1e6:.3f} MFLOP and {nbytes / 1e6:.3f} MB "
                         f"of weights per sample; peak {peak / 1e9:.1f} GFLOP/s (nominal {nominal / 1e9:.1f}, "
                         f"a matrix product {measured / 1e9:.1f}) -> {peak / flops:,.0f} "
                         f"samples/s, stream {bandwidth / 1e9:.1f} GB/s -> {bandwidth / nbytes:,.0f} "
                         f"samples/s; speed of light {light:,.0f} samples/s")
            return light

        torch_rate = None
        # Each backend at the formats asked for that it runs; the reference at float32 regardless.
        formats = {b: [f for f in dict.fromkeys(args.weights) if f in BACKEND_WEIGHTS[b]] or ["fp32"]
                   for b in cpu_backends}
        if config.lpc_inputs:  # the reduced-precision quality check draws without the predictor
            formats = {b: ["fp32"] for b in cpu_backends}
        lights = {f: cpu_light(f) for f in dict.fromkeys(f for b in cpu_backends for f in formats[b])}
        for backend, weight_format in [(b, f) for b in cpu_backends for f in formats[b]]:
            kernel = load_backend(backend, model if backend == "torch" else weights, weight_format)
            format_light = lights[weight_format]
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
                record = {
                    "backend": backend,
                    "config": config_name,
                    "utterances": batch,
                    "threads": threads,
                    "samples_per_s": rate,
                    "realtime_factor": rate / SAMPLE_RATE,
                    "speedup_vs_torch": None if torch_rate is None or batch > 1 else rate / torch_rate,
                    "flops_per_sample": flops,
                    "fraction_of_speed_of_light": rate / (threads * format_light),
                    "whole_run_samples_per_s": whole,
                    "distinct_classes": distinct,
                }
                if weight_format != "fp32":
                    record["weights"] = weight_format
                    if batch == 1:
                        record |= weight_quality(weights, config, args.quality_steps)
                records.append(record)
        if "numba" in cpu_backends:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        if "cuda" in backends:
            rows, row_notes = cuda_records(
                model, config_name, gpu, samples=max(16, int(args.seconds * SAMPLE_RATE)),
                chunk=args.cuda_chunk, repeats=args.repeats, topologies=args.cuda_topologies,
                batches=args.cuda_batches, device_arrays=device_arrays, torch_rate=torch_rate)
            records += rows
            cuda_notes += row_notes
    # Startup is no per-backend-and-config record, so the JSON output leaves it out.
    measure_startup = not (args.skip_startup or args.json) and "numba" in backends
    startup = startup_times() if measure_startup else {}

    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    today = datetime.date.today().isoformat()
    print(f"date: {today}")
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min): {load_before} before, {load()} after")
    if skipped:
        print(f"not available here: {', '.join(skipped)}")
    cpu_rows = [r for r in records if r["backend"] != "cuda"]
    if cpu_rows:
        print()
        print("\n".join(cpu_table(cpu_rows)))
        print("\nspeed of light (one core):")
        for note in notes:
            print(f"  {note}")
        if any("quality_steps" in r for r in cpu_rows):
            print("\nreduced-precision weights against fp32 (same weights, conditioning, uniforms):")
            print("\n".join(quality_table(cpu_rows)))
    if "cuda" in backends:
        from importlib.metadata import version

        print(f"\nCUDA kernel, {today}: {gpu.describe()}; numba-cuda {version('numba-cuda')}, "
              f"inputs as {device_arrays} arrays, calls of {args.cuda_chunk} samples")
        cuda_rows = [r for r in records if r["backend"] == "cuda"]
        if cuda_rows:
            print("\n".join(cuda_table(cuda_rows)))
        print("\nspeed of light (the whole GPU) and latency:")
        for note in cuda_notes:
            print(f"  {note}")
    if startup:
        print("\nnumba startup (first call of a fresh process):")
        for key, value in startup.items():
            print(f"  {key}: {value:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

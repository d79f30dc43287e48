"""The CPU's numeric format for training, chosen by measurement: float32, or bfloat16 autocast.

bf16 autocast pays where the cores multiply bfloat16 natively (AVX-512 BF16, AMX) and costs
several times over where they only emulate it (AVX2): which one a machine is, only a timing
tells. `choose_cpu_format` times one forward and backward of the task's own loss on a small
batch in each format, once per CPU, PyTorch version, task, model config and thread count, and
keeps the answer in a cache file, so later runs on the same machine start at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from tts.files import replacing
from tts.kernels.hardware import FLAGS, clock_hz, cpu_name_and_flags, nominal_peak  # noqa: F401 (re-exported)
from tts.vocoder.choice import AUTO, WEIGHT_FORMATS

# The numeric formats training may run in, spelled as the engine's weight formats are; auto
# measures (`choose_cpu_format`).
FORMATS = (AUTO, *WEIGHT_FORMATS)
# bf16 must beat float32 by this factor to be chosen: a tie is not worth its rounding.
MARGIN = 0.9
def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tts-engine" / "cpu-format.json"


def cache_key(task_name: str, config: Any) -> str:
    name, flags = cpu_name_and_flags()
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:12]
    relevant = ",".join(f for f in FLAGS if f in flags)
    return f"{name}|{relevant}|torch {torch.__version__}|{task_name}|{digest}|{torch.get_num_threads()} threads"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _time(step: Callable[[], None], repeats: int = 2) -> float:
    step()  # warm-up: allocator, thread pool, oneDNN's kernel choice
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(loss_fn: Callable[[], torch.Tensor], model: torch.nn.Module) -> dict[str, float]:
    """Seconds of one forward and backward of ``loss_fn()`` in float32 and under bf16
    autocast. The model's gradients are cleared after, and the RNG is left where it was."""

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
        model.zero_grad(set_to_none=True)

    with torch.random.fork_rng():
        return {"fp32": _time(lambda: step(False)), "bf16": _time(lambda: step(True))}


def choose_cpu_format(task_name: str, config: Any, loss_fn: Callable[[], torch.Tensor],
                      model: torch.nn.Module, path: Path | None = None) -> tuple[str, str]:
    """("fp32" | "bf16", a line saying why): the cached answer for this CPU and task, else a
    measurement, which is then cached."""
    path = cache_path() if path is None else path
    key = cache_key(task_name, config)
    cached = _read_cache(path).get(key)
    if cached is None:
        times = measure(loss_fn, model)
        cached = {"format": "bf16" if times["bf16"] < MARGIN * times["fp32"] else "fp32", **times}
        entries = _read_cache(path)
        entries[key] = cached
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replacing(path) as tmp:
                tmp.write_text(json.dumps(entries, indent=1) + "\n")
            where = f"measured, cached in {path}"
        except OSError:
            where = "measured (not cached: the cache folder is not writable)"
    else:
        where = f"cached in {path}"
    ratio = cached["bf16"] / cached["fp32"]
    why = (f"cpu format: {cached['format']} (one probe step: float32 {cached['fp32']:.3f} s, bf16 autocast "
           f"{cached['bf16']:.3f} s, {ratio:.2f}x; {where})")
    return cached["format"], why
